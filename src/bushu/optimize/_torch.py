"""The PyTorch side of compression: get an ``nn.Module`` back from an artifact, train it a little,
and export it again as a validated ONNX model.

Where the module comes from, in order:

1. ``files["module"]`` (``module.pt``): the whole module pickled by a previous ``bushu optimize``
   (so pruning a pruned model works); loaded with ``weights_only=False``, i.e. trusted like code.
2. the import source recorded in the provenance: a zoo name (``zoo.build``) or a ``module:callable``,
   rebuilt and checked against the artifact's ONNX model, so a callable whose code has changed
   since the import is caught instead of silently compressing another model.

A ``torch.export`` program (``.pt2``) or a TorchScript file has lost its module structure (layers are
functional calls), so there is nothing for channel pruning or layer replacement to work on: such
artifacts get a clear error.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.arrays import ArrayReader
from ..errors import ArtifactError, MissingDependencyError, UserInputError
from ..model.artifact import Artifact
from ..spec import synthetic_feeds

__all__ = [
    "MODULE_FILE",
    "evaluate_module",
    "export_module",
    "finetune",
    "load_module",
    "module_logits",
    "prunable_layers",
]

MODULE_FILE = "module.pt"
_WEIGHT_STEPS = ("optimize", "train", "finetune")  # provenance steps that change the weights


def quiet_openmp() -> None:
    """Idle OpenMP worker threads sleep instead of spinning, unless the user chose a policy: set before torch
    is first imported (libgomp reads OMP_WAIT_POLICY once, when it loads).

    Why: pruning, low-rank and distillation train the model in torch, whose OpenMP pool spins while it waits;
    with another process on the cores that spinning takes the CPU the training needs. Measured on this 2-core
    machine, `bushu optimize --prune 0.5 --epochs 3` of the Fashion-MNIST CNN: while a test run used the other
    core, 231 s with torch's defaults (spinning), 57 s passive, 29 s with one thread; on the idle machine 21.2 s
    spinning, 24.7 s passive, 19.9 s one thread. Passive costs ~17% when the cores are free and saves 4x when
    they are not; OMP_WAIT_POLICY=ACTIVE (or OMP_NUM_THREADS=1) in the environment overrides it."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _torch():
    quiet_openmp()
    try:
        import torch
    except ImportError as e:
        raise MissingDependencyError("pruning, low-rank factorization and distillation", "torch") from e
    return torch


def example_shape(art: Artifact, batch: int = 2) -> tuple[int, ...]:
    if len(art.inputs) != 1:
        raise UserInputError(
            f"pruning, low-rank and distillation handle models with one input; {art.name} has {len(art.inputs)}"
        )
    return tuple(art.inputs[0].concrete_shape(batch=batch))


def load_module(art: Artifact, log: Callable[[str], None] = lambda _m: None) -> tuple[Any, str]:
    """(eval-mode nn.Module equal to the artifact's model, where it came from)."""
    torch = _torch()
    if "module" in art.files:
        path = art.file("module")
        try:
            module = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - unpickling errors of every kind
            raise ArtifactError(
                f"{path} could not be loaded as a PyTorch module: {str(e).splitlines()[0][:300]}",
                hint="re-run the bushu optimize step that wrote it",
            ) from e
        return module.eval(), f"{MODULE_FILE} (module saved by a previous optimize)"
    prov = art.provenance
    kind = str(prov.get("source_kind"))
    changed = [s.get("command") for s in prov.get("steps", []) if s.get("command") in _WEIGHT_STEPS]
    if changed:
        raise UserInputError(
            f"{art.path} was changed by `bushu {changed[-1]}` after its import but holds no "
            "PyTorch module, so its compressed weights cannot be rebuilt",
            hint="compress the imported artifact instead, combining the steps in one bushu optimize call",
        )
    if kind == "zoo":
        from ..model import zoo

        module, _ = zoo.build(prov["zoo"]["name"])
        how = f"zoo model {prov['zoo']['name']}"
    elif kind == "callable":
        from ..import_.importer import _load_torch_source

        module = _load_torch_source("callable", prov["callable"], example_shape(art, 1))[0]
        how = f"callable {prov['callable']}"
    else:
        what = {"onnx": "an ONNX file", "pt2": "a torch.export program", "torchscript": "a TorchScript file"}.get(
            kind, "a source without a PyTorch module"
        )
        raise UserInputError(
            f"{art.name} was imported from {what}, which has no PyTorch module structure for "
            "pruning, low-rank factorization or distillation to change",
            hint="import the model from a module:callable or a zoo name (bushu import "
            "pkg.models:build -o ART), or use --quantize only",
        )
    module.eval()
    _check_same_model(module, art)
    log(f"rebuilt the PyTorch module from {how}; it matches {art.model_file}")
    return module, how


def _check_same_model(module: Any, art: Artifact) -> None:
    from ..validate import check_tolerance, run_model

    torch = _torch()
    feeds = synthetic_feeds(art.inputs, batch=2, seed=3)
    with torch.no_grad():
        out = module(*[torch.from_numpy(feeds[s.name]) for s in art.inputs])
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    got = run_model(art.model_path, feeds)
    ref = {name: o.numpy() for name, o in zip(got, outs, strict=False)}
    try:
        check_tolerance(f"the rebuilt PyTorch module of {art.name}", ref, got, 1e-3, 1e-3)
    except Exception as e:
        raise UserInputError(
            f"the PyTorch module rebuilt from the provenance of {art.name} no longer matches its "
            f"{art.model_file} ({e.__class__.__name__}: {str(e).splitlines()[0][:200]})",
            hint="re-import the model (its code or weights changed since the import)",
        ) from e


def module_logits(module: Any, x: np.ndarray, batch: int = 32) -> np.ndarray:
    torch = _torch()
    module.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(module(torch.from_numpy(x[i : i + batch])).numpy())
    return np.concatenate(outs)


# -- data ---------------------------------------------------------------------------------------------
def evaluate_module(module: Any, ds: ArrayReader) -> float | None:
    if ds.targets is None:
        return None
    return round(100.0 * float(np.mean(module_logits(module, ds.x).argmax(1) == ds.targets)), 3)


# -- training -----------------------------------------------------------------------------------------
def recalibrate_bn(module: Any, x: np.ndarray, batch: int = 32) -> int:
    """Re-estimate BatchNorm running statistics on ``x`` (cheap, and what pruning disturbs most)."""
    torch = _torch()
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or len(x) < 2:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            if len(x[i : i + batch]) > 1:
                module(torch.from_numpy(x[i : i + batch]))
    for m, (mom, tr) in zip(bns, saved, strict=True):
        m.momentum, m.training = mom, tr
    module.eval()
    return len(bns)


def teacher_targets(model_path: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float model's logits on ``x`` and on ``x`` flipped left-right (the augmentation used)."""
    from ..validate import run_model

    name = _input_name(model_path)
    plain = next(iter(run_model(model_path, {name: x}).values()))
    flipped = next(iter(run_model(model_path, {name: np.ascontiguousarray(x[..., ::-1])}).values()))
    return plain, flipped


def _input_name(model_path: Path) -> str:
    import onnx

    g = onnx.load(str(model_path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return next(i.name for i in g.input if i.name not in inits)


def finetune(
    module: Any,
    ds: ArrayReader,
    teacher: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 16,
    temperature: float = 4.0,
    alpha: float | None = None,
    seed: int = 0,
    keep_zeros: bool = False,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Train ``module`` on ``ds``: cross-entropy on hard labels (if any) + KL to the teacher's soft targets.

    ``alpha`` weights the soft (distillation) term; by default 0.5 with labels, 1.0 without. Images
    are flipped left-right at random; BatchNorm statistics are re-estimated first and then frozen
    (small batches of a few hundred images would only add noise to them). ``keep_zeros``: weights
    that are exactly zero stay zero (after unstructured pruning), so the sparsity survives training.
    """
    torch = _torch()
    import torch.nn.functional as F

    if teacher is None and ds.targets is None:
        raise UserInputError(
            f"fine-tuning needs labels or a teacher; {ds.source} has neither",
            hint="use a folder with one sub-folder per class",
        )
    if alpha is None:
        alpha = 0.5 if ds.targets is not None and teacher is not None else (1.0 if teacher is not None else 0.0)
    if teacher is None:
        alpha = 0.0
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    recalibrate_bn(module, ds.x)
    masks = [(p, p.detach() != 0) for p in module.parameters() if p.dim() > 1] if keep_zeros else []

    def reapply() -> None:
        with torch.no_grad():
            for p, m in masks:
                p.mul_(m)

    head = fit_head(module, ds, teacher, temperature, alpha)
    reapply()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = max(1, epochs * int(np.ceil(len(ds) / batch_size)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    losses = []
    for epoch in range(epochs):
        module.train()
        for m in bns:
            m.eval()
        perm = rng.permutation(len(ds))
        total, n = 0.0, 0
        for i in range(0, len(ds), batch_size):
            idx = perm[i : i + batch_size]
            flip = rng.random(len(idx)) < 0.5
            xb = ds.x[idx].copy()
            xb[flip] = xb[flip][..., ::-1]
            out = module(torch.from_numpy(np.ascontiguousarray(xb)))
            loss = torch.zeros(())
            if alpha > 0 and teacher is not None:  # alpha is 0 without a teacher
                t = np.where(flip[:, None], teacher[1][idx], teacher[0][idx])
                soft_t = F.softmax(torch.from_numpy(t) / temperature, dim=1)
                loss = loss + alpha * temperature**2 * F.kl_div(
                    F.log_softmax(out / temperature, dim=1), soft_t, reduction="batchmean"
                )
            if ds.targets is not None and alpha < 1:
                loss = loss + (1 - alpha) * F.cross_entropy(out, torch.from_numpy(ds.targets[idx]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            reapply()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        losses.append(round(total / max(n, 1), 4))
        log(f"  fine-tune epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f}")
    module.eval()
    return {
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "samples": len(ds),
        "temperature": temperature,
        "soft_weight": alpha,
        "hard_labels": ds.targets is not None,
        "head_refit": head,
        "loss_per_epoch": losses,
    }


def fit_head(
    module: Any,
    ds: ArrayReader,
    teacher: tuple[np.ndarray, np.ndarray] | None,
    temperature: float,
    alpha: float,
    steps: int = 300,
) -> dict[str, Any] | None:
    """Re-fit the output Linear layer on the (changed) features first: cheap, since the features are
    computed once, and it gives the full fine-tuning a head that matches its new backbone."""
    torch = _torch()
    import torch.nn.functional as F

    _, last = prunable_layers(module, torch.from_numpy(ds.x[:2]))
    if not isinstance(last, torch.nn.Linear):
        return None
    feats: list[Any] = []
    hook = last.register_forward_hook(lambda _m, i, _o: feats.append(i[0].detach()))
    try:
        module_logits(module, ds.x)
    finally:
        hook.remove()
    f = torch.cat(feats)
    opt = torch.optim.Adam(last.parameters(), lr=1e-2)
    soft = F.softmax(torch.from_numpy(teacher[0]) / temperature, 1) if teacher is not None and alpha > 0 else None
    hard = torch.from_numpy(ds.targets).long() if ds.targets is not None and alpha < 1 else None
    first: float | None = None
    final: float | None = None
    for _ in range(steps):
        out = last(f)
        loss = torch.zeros(())
        if soft is not None:
            loss = loss + alpha * temperature**2 * F.kl_div(
                F.log_softmax(out / temperature, 1), soft, reduction="batchmean"
            )
        if hard is not None:
            loss = loss + (1 - alpha) * F.cross_entropy(out, hard)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
        final = loss.item()
    if first is None or final is None:  # steps == 0
        return {"steps": 0, "loss_first": None, "loss_last": None}
    return {"steps": steps, "loss_first": round(first, 4), "loss_last": round(final, 4)}


def task_gradients(
    module: Any, ds: ArrayReader, teacher: np.ndarray | None, batches: int = 4, batch_size: int = 16
) -> None:
    """Accumulate gradients of the task loss in ``.grad`` (for Taylor importance)."""
    torch = _torch()
    import torch.nn.functional as F

    module.eval()
    module.zero_grad()
    for i in range(0, min(len(ds), batches * batch_size), batch_size):
        out = module(torch.from_numpy(ds.x[i : i + batch_size]))
        if ds.targets is not None:
            loss = F.cross_entropy(out, torch.from_numpy(ds.targets[i : i + batch_size]).long())
        elif teacher is None:
            raise ValueError("task_gradients needs labelled data or the teacher's logits")
        else:
            loss = F.kl_div(
                F.log_softmax(out, 1),
                F.softmax(torch.from_numpy(teacher[i : i + batch_size]), 1),
                reduction="batchmean",
            )
        loss.backward()


# -- structure ----------------------------------------------------------------------------------------
def prunable_layers(module: Any, example: Any) -> tuple[list[tuple[str, Any]], Any]:
    """(Conv/Linear layers in call order as (name, module), the layer that produces the output)."""
    torch = _torch()
    order: list[tuple[str, Any]] = []
    names = {id(m): n for n, m in module.named_modules()}
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: order.append((names[id(mod)], mod)))
        for m in module.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return order, (order[-1][1] if order else None)


# -- export -------------------------------------------------------------------------------------------
def export_module(
    module: Any, art: Artifact, workdir: Path, name: str = "model.onnx", reference: bool = True
) -> dict[str, Any]:
    """Export ``module`` with the artifact's IO names; simplify; check ONNX vs the module (fp32 budget).

    Returns {"onnx": path, "reference": path | None, "module": path, "parity": {...}, "simplify": {...}}.
    """
    torch = _torch()
    from ..import_ import onnx as conv
    from ..import_.importer import Tolerance, _parity

    workdir.mkdir(parents=True, exist_ok=True)
    example = [np.random.default_rng(0).standard_normal(example_shape(art, 2)).astype(np.float32)]
    path = conv.export_onnx(
        module, example, workdir / name, [s.name for s in art.inputs], [s.name for s in art.outputs]
    )
    simp = conv.simplify(path)
    parity = _parity(module, path, list(art.inputs), Tolerance(), what="ONNX export of the compressed module")
    ref = None
    if reference:
        ref = conv.save_reference(module, example, workdir / "model.pt2", art.inputs, art.outputs)
    mod_path = workdir / MODULE_FILE
    torch.save(module, str(mod_path))
    return {"onnx": path, "reference": ref, "module": mod_path, "parity": parity, "simplify": simp}


def scratch_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="bushu-compress-")


def count_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def sequence_str(xs: Sequence[Any]) -> str:
    return ", ".join(map(str, xs))
