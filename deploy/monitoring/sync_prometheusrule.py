"""Write deploy/base/prometheusrule.yaml from deploy/monitoring/alerts.rules.yml (the single source of the alert
rules), so promtool (which reads plain rule files) and the Prometheus Operator (which reads PrometheusRule objects)
see the same groups. tests/platform/test_deploy_manifests.py fails when the two differ.

Run: python deploy/monitoring/sync_prometheusrule.py
"""

from __future__ import annotations

import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = HERE / "alerts.rules.yml"
TARGET = HERE.parent / "base" / "prometheusrule.yaml"

HEADER = (
    "# GENERATED from deploy/monitoring/alerts.rules.yml by deploy/monitoring/sync_prometheusrule.py: edit that file\n"
    "# and rerun the script (tests/platform/test_deploy_manifests.py checks the two are equal).\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks (`|`), as written in alerts.rules.yml."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "rwa-alerts", "labels": {"app.kubernetes.io/name": "stablerwa"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
