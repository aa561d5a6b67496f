"""Backend registry: names, suffixes, lazy imports and install hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from bushu.errors import MissingDependencyError, UnknownNameError, UserInputError
from bushu.runtime import load_backend, registry
from bushu.runtime.backends.null import NullBackend


@pytest.fixture
def fake(monkeypatch):
    """A backend whose framework is not installed (its module cannot be imported)."""
    spec = registry.BackendSpec("fakert", "bushu_fakert_not_installed.backend:Fake", "fakert", (".fake",))
    monkeypatch.setitem(registry.BUILTIN, "fakert", spec)


def test_builtins_are_listed():
    assert {"onnxruntime", "openvino", "torch", "null"} <= set(registry.list_backends())
    assert registry.list_backends() == sorted(registry.list_backends())


def test_unknown_backend_suggests_close_names():
    with pytest.raises(UnknownNameError) as err:
        registry.get_backend("onnxruntme")
    assert err.value.http_status == 404
    assert "did you mean 'onnxruntime'" in str(err.value)
    assert err.value.suggestions[0] == "onnxruntime"


def test_unknown_backend_without_close_match_lists_all():
    with pytest.raises(UnknownNameError) as err:
        registry.get_backend("zzzz")
    assert "did you mean" not in str(err.value) and "openvino" in str(err.value)


def test_missing_dependency_gives_exact_pip_hint(fake):
    with pytest.raises(MissingDependencyError) as err:
        registry.get_backend("fakert")
    assert err.value.hint == "pip install 'bushu[fakert]'"
    assert err.value.http_status == 501
    assert "bushu_fakert_not_installed" in str(err.value)
    assert not registry.is_installed("fakert")
    assert "fakert" in registry.list_backends() and "fakert" not in registry.installed_backends()


def test_suffix_of_a_missing_backend_gives_the_hint(fake):
    with pytest.raises(MissingDependencyError, match=r"pip install 'bushu\[fakert\]'"):
        registry.backend_for_path(Path("model.fake"))


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("m.onnx", "onnxruntime"),
        ("M.ONNX", "onnxruntime"),
        ("dir/m.v2.onnx", "onnxruntime"),
        ("m.xml", "openvino"),
        ("m.null", "null"),
    ],
)
def test_backend_for_path_picks_by_suffix(name, backend):
    if not registry.is_installed(backend):
        pytest.skip(f"{backend} not installed")
    assert registry.backend_for_path(Path(name)).name == backend


@pytest.mark.parametrize("name", ["model.txt", "model"])
def test_unreadable_suffix_is_a_user_error(name):
    with pytest.raises(UserInputError, match="no backend reads") as err:
        registry.backend_for_path(Path(name))
    assert ".onnx" in err.value.hint


def test_entry_point_plugins_are_found(monkeypatch):
    plugin = registry.BackendSpec("myplugin", "bushu.runtime.backends.null:NullBackend", "myplugin", ())
    monkeypatch.setattr(registry, "_entry_points", lambda: {"myplugin": plugin})
    assert "myplugin" in registry.list_backends()
    assert registry.get_backend("myplugin") is NullBackend
    broken = registry.BackendSpec("broken", "bushu_no_such_plugin:X", "broken", (), package="broken-dist")
    monkeypatch.setattr(registry, "_entry_points", lambda: {"broken": broken})
    with pytest.raises(MissingDependencyError, match=r"pip install broken-dist"):
        registry.get_backend("broken")


@pytest.fixture(scope="module")
def null_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reg") / "echo.null"
    path.write_text("inputs: [{name: x, dtype: float32, shape: [batch, 2]}]\n")
    return path


def test_options_not_accepted_are_user_errors(null_model):
    with pytest.raises(UserInputError, match=r"does not accept option\(s\) \['bogus'\]") as err:
        load_backend(null_model, "null", bogus=1)
    assert "delay_ms" in str(err.value)


def test_load_backend_by_suffix_and_accepted_option(null_model):
    with load_backend(null_model, delay_ms=0) as b:
        assert b.name == "null" and [s.name for s in b.inputs] == ["x"]


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) declaring a backend and an exporter whose modules
    are missing, as a third-party plugin installed without its framework."""
    info = tmp_path / "acme_rt_plugin-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rt-plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(
        "[bushu.backends]\nacmert = acme_rt_missing.backend:AcmeBackend\n\n"
        "[bushu.exporters]\nacme = acme_rt_missing.export:ACME_FORMAT\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from bushu.export import formats

    registry._entry_points.cache_clear()
    formats._plugin_formats.cache_clear()
    yield
    registry._entry_points.cache_clear()
    formats._plugin_formats.cache_clear()


def test_failing_plugin_backend_hint_names_its_distribution(plugin_dist):
    assert "acmert" in registry.list_backends()
    with pytest.raises(MissingDependencyError) as err:
        registry.get_backend("acmert")
    assert err.value.hint == "pip install acme-rt-plugin"  # the entry point's own distribution, not bushu[acmert]


def test_failing_plugin_exporter_hint_names_its_distribution(plugin_dist):
    from bushu.export import formats

    assert "acme" in formats.list_formats()
    with pytest.raises(MissingDependencyError) as err:
        formats.get_format("acme")
    assert err.value.hint == "pip install acme-rt-plugin"


def test_capability_flags_drive_the_commands():
    from bushu.plan.variants import BACKENDS
    from bushu.serve.config import platform_of

    assert BACKENDS == registry.with_flag("plannable") == ("onnxruntime", "openvino")
    assert platform_of("openvino") == "openvino" and platform_of("onnxruntime") == "onnxruntime_onnx"
    assert (
        registry.backend_spec("openvino").needs_calibration
        and not registry.backend_spec("onnxruntime").needs_calibration
    )
