"""deploy/: the compose file, the Prometheus scrape config and the Grafana dashboard and provisioning
parse, agree with each other (port, data source uid, paths) and refer only to files that exist.
The compose stack itself cannot run here (no container runtime in the tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO

from voicerag.settings import Settings

DEPLOY = REPO / "deploy"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "compose.yaml")


def test_compose_runs_the_agent_with_its_services_and_every_mounted_file_exists() -> None:
    services = compose()["services"]
    assert set(services) == {"agent", "chroma", "redis", "postgres", "prometheus", "grafana"}
    agent = services["agent"]
    assert (DEPLOY / agent["build"]["context"] / agent["build"]["dockerfile"]).is_file()
    for variable in agent["environment"]:  # every setting the agent is given is a real one
        assert variable.lower() in Settings.model_fields or variable == "PROMETHEUS_MULTIPROC_DIR", variable
    mounts = [v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if v.startswith(".")]
    assert len(mounts) == 3  # the scrape config, Grafana's provisioning and the dashboard
    for mount in mounts:
        assert (DEPLOY / mount).exists(), mount


def test_the_dockerfile_copies_what_exists() -> None:
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
    copied = [part for line in lines if line.startswith("COPY ") for part in line.split()[1:-1]]
    assert "voicerag" in copied
    for path in copied:
        assert (REPO / path).exists(), path


def test_prometheus_scrapes_the_agent_on_its_metrics_port() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    targets = [t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    port = compose()["services"]["agent"]["environment"]["METRICS_PORT"]
    assert targets == [f"agent:{port}"]
    assert config["scrape_configs"][0]["metrics_path"] == "/metrics"


def test_the_dashboard_parses_and_uses_the_provisioned_data_source() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "voicerag.json").read_text(encoding="utf-8"))
    datasources = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    uids = {d["uid"] for d in datasources}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert dashboard["uid"] == "voicerag" and len(panels) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] in uids and panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "voicerag.yaml")["providers"][0]
    grafana_mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.endswith(f"{provider['options']['path']}/voicerag.json:ro") for m in grafana_mounts)
