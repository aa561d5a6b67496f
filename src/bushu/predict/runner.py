"""One batch of items -> one row each, in this process, in worker processes, or (ray_job) in Ray actors.

``Predictor`` splits the work in two so that Ray can run the halves in different places:
``prepare`` (decode one input: an image/clip -> float32 array, a text file -> str; raises for a bad input)
and ``answer`` (a list of prepared inputs -> the task's answer per input, through the backend).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ArtifactError, BushuError, UserInputError
from ..model.artifact import Artifact, Preprocess
from .inputs import Item

if TYPE_CHECKING:
    from ..detection.decode import DetectionHead
    from ..detection.detector import Detector
    from ..model.predict import Classifier, Pipeline
    from ..runtime.backend import Backend

Row = dict[str, Any]


def describe_error(e: BaseException) -> str:
    msg = e.message if isinstance(e, BushuError) else f"{type(e).__name__}: {e}"
    return msg.splitlines()[0] if msg else type(e).__name__


def raw_input_preprocess(art: Artifact) -> Preprocess:
    """The artifact's pre-processing; an ArtifactError for one that records none (it cannot take raw inputs)."""
    if art.preprocess is None:
        raise ArtifactError(
            f"{art.path} records no pre-processing, so it cannot take raw inputs",
            hint="train it with bushu train, or import it with --preprocess",
        )
    return art.preprocess


def read_input(pp: Preprocess, item: Item, task: str = "classification", fast_decode: bool = False) -> Any:
    """One input -> what the pre-processing batches: a float32 array (image, audio), a string (text), or
    for a detector (array, transform back to the image's pixels). ``fast_decode``: a large JPEG is decoded at a
    reduced scale (processing.jpeg_draft; classifiers with a shorter-side resize)."""
    if pp.kind == "text":
        from ..model.predict import _as_text

        text = item.value if item.is_text else _as_text(Path(item.value))
        if not text.strip():
            raise UserInputError("empty text")
        return text
    if not item.value:
        raise UserInputError("empty path")
    if task == "detection":
        from ..detection.detector import prepare

        batch, transforms = prepare([item.value], pp)
        return batch[0], transforms[0]
    from ..model.predict import prepare_one

    return prepare_one(pp, item.value, fused=True, fast_decode=fast_decode)


def backend_class(art: Artifact, backend: str | None) -> type[Backend]:
    """The backend class a Predictor loads for ``art`` (a classifier's default is onnxruntime)."""
    from ..runtime.registry import backend_for_path, get_backend

    if backend:
        return get_backend(backend)
    return backend_for_path(art.model_path) if art.task == "detection" else get_backend("onnxruntime")


def local_plan(cls: type[Backend], threads: int | None, cores: int | None = None) -> tuple[int, int | None]:
    """-> (streams, intra-op threads) for one process. A backend that takes concurrent infer() calls runs two
    batches at a time, each on its own thread (decode, pre-process, inference), through one loaded model, with
    the intra-op pool sized so that the two calling threads and the pool's workers fill the cores: on 2 cores,
    two 1-thread inferences side by side do more work per second than one 2-thread inference, and the
    decoding of one batch fills the gaps of the other (bench/predict.py, docs/notes.md). Other backends: one
    stream, its next batch decoded in a thread meanwhile."""
    cores = cores or os.cpu_count() or 1
    if not cls.concurrent_infer or cores < 2:
        return 1, threads
    return 2, threads or max(1, cores - 1)


class Predictor:
    """The artifact's pre-processing and backend; ``run(items)`` -> rows (error rows for bad inputs).

    Thread-safe when the backend is (``Backend.concurrent_infer``): ``run`` keeps no state between calls."""

    def __init__(
        self,
        artifact: str | Path,
        backend: str | None = None,
        threads: int | None = None,
        top_k: int = 5,
        fast_decode: bool = False,
    ):
        from ..model.artifact import Artifact

        art = Artifact.load(artifact)
        self.task, self.top_k, self.fast_decode = art.task, top_k, fast_decode
        self.pipeline: Pipeline | None = None
        self.runner: Detector | Classifier
        self.head: DetectionHead | None = None
        options: dict[str, Any] = {"threads": threads} if threads else {}
        if "spinning" in backend_class(art, backend).options:
            # idle intra-op workers sleep instead of spinning: the cores go to the decoding thread (or the other
            # stream) in the meantime; a spinning pool keeps them busy doing nothing
            options["spinning"] = False
        if self.task == "detection":
            from ..detection.detector import Detector

            detector = Detector(art, backend, **options)
            self.runner, self.head, self.input_name = detector, detector.head, detector.input_name
        else:
            from ..model.predict import Classifier

            classifier = Classifier(art, backend, **options)
            self.runner, self.pipeline = classifier, classifier.pipeline
            self.input_name = classifier.pipeline.input_name
        self.art, self.backend = self.runner.art, self.runner.backend
        # everything the rows need is read here (the artifact reads labels.txt on first use): a Ray actor
        # deletes its unpacked copy of the artifact once this returns
        self.art.labels  # noqa: B018
        self.preprocess = raw_input_preprocess(self.art)
        self.kind = self.preprocess.kind
        first = self.backend.inputs[0].shape[:1]
        self.fixed_batch = first[0] if first and isinstance(first[0], int) and first[0] > 0 else None
        self.answer_fn = self._answer_fn()

    def _answer_fn(self) -> Callable[[dict[str, np.ndarray], list[Any]], list[Row]]:
        """The dispatch point on the artifact's task: classification -> top-k, detection -> boxes,
        anything else -> the raw outputs."""
        return {"classification": self._top_k, "detection": self._boxes}.get(self.task, self._raw)

    def prepare(self, item: Item) -> Any:
        return read_input(self.preprocess, item, self.task, self.fast_decode)

    def answer(self, prepared: Sequence[Any]) -> list[Row]:
        """Prepared inputs -> one answer dict each (without "input")."""
        out: list[Row] = []
        step = self.fixed_batch or len(prepared)
        for i in range(0, len(prepared), step or 1):
            chunk = list(prepared[i : i + step])
            n = len(chunk)
            if self.fixed_batch and n < self.fixed_batch:  # a fixed-batch model takes exactly that many
                chunk += [chunk[-1]] * (self.fixed_batch - n)
            if self.pipeline is not None and self.kind == "text":
                feeds = self.pipeline(chunk)
            else:
                feeds = {self.input_name: np.stack([c[0] if self.task == "detection" else c for c in chunk])}
            out += self.answer_fn(self.backend.infer(feeds), chunk[:n])
        return out

    def _boxes(self, outputs: dict[str, np.ndarray], chunk: list[Any]) -> list[Row]:
        assert self.head is not None, "only a detection artifact answers with boxes"
        n = len(chunk)
        dets = self.head({k: np.asarray(v)[:n] for k, v in outputs.items()}, [c[1] for c in chunk], None, None, None)
        return [{"detections": [d.to_dict() for d in found]} for found in dets]

    def _top_k(self, outputs: dict[str, np.ndarray], chunk: list[Any]) -> list[Row]:
        from ..model.processing import top_k

        n = len(chunk)
        logits = np.asarray(outputs[self.backend.outputs[0].name])[:n].reshape(n, -1)
        return [
            {
                "label": best[0][1],
                "score": best[0][2],
                "top_k": [{"index": i, "label": lab, "score": s} for i, lab, s in best],
            }
            for best in top_k(logits, self.art.labels, self.art.postprocess, k=self.top_k)
        ]

    def _raw(self, outputs: dict[str, np.ndarray], chunk: list[Any]) -> list[Row]:
        return [
            {"outputs": {name: np.asarray(v)[j].tolist() for name, v in outputs.items()}} for j in range(len(chunk))
        ]

    def prepare_all(self, items: Sequence[Item]) -> tuple[list[Item], list[Any], list[Row]]:
        """-> (items that were read, their prepared inputs, error rows for the others)."""
        good, prepared, errors = [], [], []
        for it in items:
            try:
                prepared.append(self.prepare(it))
                good.append(it)
            except Exception as e:  # noqa: BLE001 - any reader's failure is this input's error row; the run goes on
                errors.append({"input": it.key, "error": describe_error(e)})
        return good, prepared, errors

    def finish(self, good: list[Item], prepared: list[Any], errors: list[Row]) -> list[Row]:
        if not prepared:
            return errors
        try:
            answers = self.answer(prepared)
        except Exception as e:  # noqa: BLE001 - the batch failed as a whole: retry one by one to find the culprit
            if len(prepared) == 1:
                return errors + [{"input": good[0].key, "error": describe_error(e)}]
            rows = errors
            for it, p in zip(good, prepared):
                rows += self.finish([it], [p], [])
            return rows
        return errors + [{"input": it.key, **a} for it, a in zip(good, answers)]

    def run(self, items: Sequence[Item]) -> list[Row]:
        return self.finish(*self.prepare_all(items))

    def close(self) -> None:
        self.runner.close()


def batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _as_finished(submit: Callable[[list[Item]], Future], work: Iterator[list[Item]], limit: int) -> Iterator[Any]:
    """Results of ``submit(batch)`` for every batch, as they finish, with at most ``limit`` batches in flight;
    what is still queued is cancelled when the caller stops early."""
    pending: list[Future] = []
    try:
        while True:
            while len(pending) < limit and (b := next(work, None)):
                pending.append(submit(b))
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for f in [f for f in pending if f in finished]:  # in submission order when several finished
                pending.remove(f)
                yield f.result()
    finally:
        for f in pending:
            f.cancel()


def run_local(
    artifact: Path,
    items: Sequence[Item],
    batch_size: int,
    backend: str | None,
    threads: int | None,
    top_k: int,
    fast_decode: bool = False,
) -> Iterator[list[Row]]:
    """In this process. Two streams through one backend when it takes concurrent calls (``local_plan``);
    otherwise the next batch is decoded in a thread while the backend runs this one."""
    streams, threads = local_plan(backend_class(Artifact.load(artifact), backend), threads)
    pred = Predictor(artifact, backend, threads, top_k, fast_decode)
    try:
        if streams > 1:
            with ThreadPoolExecutor(streams, thread_name_prefix="bushu-predict") as pool:
                yield from _as_finished(lambda b: pool.submit(pred.run, b), batches(items, batch_size), 2 * streams)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="bushu-predict-read") as pool:
            it = batches(items, batch_size)
            nxt: Future | None = pool.submit(pred.prepare_all, b) if (b := next(it, None)) else None
            while nxt is not None:
                ready = nxt.result()
                b = next(it, None)
                nxt = pool.submit(pred.prepare_all, b) if b else None
                yield pred.finish(*ready)
    finally:
        pred.close()


_WORKER: Predictor | None = None


def _init_worker(artifact: str, backend: str | None, threads: int | None, top_k: int, fast_decode: bool) -> None:
    global _WORKER
    _WORKER = Predictor(artifact, backend, threads, top_k, fast_decode)


def _work(items: list[Item]) -> list[Row]:
    assert _WORKER is not None
    return _WORKER.run(items)


def run_processes(
    artifact: Path,
    items: Sequence[Item],
    batch_size: int,
    backend: str | None,
    threads: int | None,
    top_k: int,
    workers: int,
    fast_decode: bool = False,
) -> Iterator[list[Row]]:
    """``workers`` processes, each with its own backend (``threads`` each; default: the cores shared out);
    batches come back as they finish, at most two per worker in flight."""
    import multiprocessing

    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # no inherited runtime threads or locks
    with ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(str(artifact), backend, threads, top_k, fast_decode),
    ) as pool:
        try:
            yield from _as_finished(lambda b: pool.submit(_work, b), batches(items, batch_size), 2 * workers)
        except BrokenProcessPool as e:  # a worker died (out of memory, or its model failed to load)
            raise BushuError(
                f"a predict worker process stopped: {e}",
                hint="rerun with --workers 1 to see the error; the rows so far are kept",
            ) from e
