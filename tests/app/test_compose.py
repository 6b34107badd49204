"""docker-compose.yml cannot run here (no Docker engine); check it by reading: it parses, every service is
wired, and every PAGELENS_ variable it sets is one that Settings reads, with a value Settings accepts."""

from __future__ import annotations

import pytest
import yaml

from schemas.settings import Settings
from tests.conftest import ROOT


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _expand(v: str) -> str:
    """Resolve ${VAR:-default} the way compose does with VAR unset."""
    import re

    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v)


def test_services_and_health_checks() -> None:
    c = _compose()
    assert set(c["services"]) == {"qdrant", "postgres", "vllm", "api", "ui", "ray-head", "ray-worker",
                                  "ray-gpu-worker"}
    for name, svc in c["services"].items():
        assert "healthcheck" in svc, name
    assert c["services"]["api"]["depends_on"]["vllm"] == {"condition": "service_healthy"}
    assert any("structured-outputs-config" in a for a in c["services"]["vllm"]["command"])
    assert any("max_pixels" in a for a in c["services"]["vllm"]["command"])
    assert c["services"]["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert (ROOT / "Dockerfile").exists() and c["services"]["api"]["build"] == "."


def test_the_ray_profile_is_optional_and_shares_stores_and_files() -> None:
    c = _compose()["services"]
    head, worker = c["ray-head"], c["ray-worker"]
    assert all(c[n].get("profiles") is None for n in ("qdrant", "postgres", "vllm", "api", "ui")), "up starts these"
    assert head["profiles"] == worker["profiles"] == ["ray"], "only `--profile ray` starts Ray"
    assert "--head" in head["command"] and "--address=ray-head:6379" in worker["command"]
    assert worker["depends_on"]["ray-head"] == {"condition": "service_healthy"}
    gpu = c["ray-gpu-worker"]
    assert gpu["profiles"] == ["ray-gpu"] and gpu["command"] == worker["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "cu" in gpu["build"]["args"]["TORCH_INDEX"], "CUDA torch for the encoder actors"
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in (ROOT / "Dockerfile").read_text()
    for svc in (head, worker, gpu):  # the driver's planned files are read in place; results go to the shared stores
        assert svc["environment"] == c["api"]["environment"] and "data:/data" in svc["volumes"]
    assert "ray" in (ROOT / "Dockerfile").read_text().split("pip install '.[")[1].split("]")[0].split(",")


def test_the_stack_makes_ray_workers_write_into_the_shared_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose stack's stores are a Qdrant server and PostgreSQL, so on its Ray cluster the workers write the
    pages they read themselves ("many writers"), rather than sending them all to the driver."""
    from ingest.write import SharedStores

    for k, v in _compose()["services"]["ray-head"]["environment"].items():
        monkeypatch.setenv(k, _expand(str(v)))
    stores = SharedStores.of(Settings(), "default")
    assert stores is not None and stores.qdrant_url == "http://qdrant:6333"
    assert stores.catalog_url.startswith("postgresql+psycopg://")


def test_environment_is_what_pagelens_reads(monkeypatch: object) -> None:
    env = {k: _expand(str(v)) for k, v in _compose()["services"]["api"]["environment"].items()}
    pagelens = {k: v for k, v in env.items() if k.startswith("PAGELENS_")}
    for k, v in pagelens.items():
        monkeypatch.setenv(k, v)  # type: ignore[attr-defined]
    s = Settings()
    groups = {g: f.annotation for g, f in Settings.model_fields.items() if hasattr(f.annotation, "model_fields")}
    known = set(Settings.model_fields) | {f"{g}__{f}" for g, group in groups.items()
                                          for f in group.model_fields}  # type: ignore[union-attr]
    for k in pagelens:
        assert k.removeprefix("PAGELENS_").lower() in known, f"{k} is not a PageLens setting"
    assert s.qdrant_url == "http://qdrant:6333" and s.vlm_url == "http://vllm:8000/v1"
    assert s.catalog_url.startswith("postgresql+psycopg://pagelens:")
    assert s.catalog_url.endswith("@postgres:5432/pagelens")
    assert s.vlm.structured_outputs == "structured_outputs" and s.vlm.max_pixels == 1351680
    assert not s.rerank.enabled, "the late-interaction rerank is off unless RERANK_MODEL is given"
    vllm_cmd = " ".join(_compose()["services"]["vllm"]["command"])
    assert f'"max_pixels":{s.vlm.max_pixels}' in vllm_cmd, "vLLM's pixel budget matches the one pages are rendered at"
    assert _compose()["services"]["postgres"]["environment"]["POSTGRES_DB"] in s.catalog_url
