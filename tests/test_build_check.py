"""The import-time check of the compiled extension: a missing or mismatched build is a clear
ImportError that says how to rebuild."""
import pytest

from fastrnn import _build_check

record = pytest.importorskip("fastrnn._build_record")


def test_the_installed_build_passes():
    _build_check.check_build()


def test_other_torch_version(monkeypatch):
    monkeypatch.setattr(record, "TORCH_VERSION", "1.0.0")
    with pytest.raises(ImportError, match="compiled against torch 1.0.0 .* rebuild it"):
        _build_check.check_build()


def test_other_cuda_version(monkeypatch):
    monkeypatch.setattr(record, "CUDA_VERSION", "9.9")
    with pytest.raises(ImportError, match="compiled against CUDA 9.9"):
        _build_check.check_build()


def test_missing_extension(monkeypatch, tmp_path):
    (tmp_path / "__init__.py").write_text("")
    monkeypatch.setattr(_build_check.os.path, "abspath", lambda _: str(tmp_path / "x.py"))
    with pytest.raises(ImportError, match="compiled extension .* is missing .* never built"):
        _build_check.check_build()
