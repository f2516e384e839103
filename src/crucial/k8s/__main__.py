"""``python -m crucial.k8s render``: the plain manifests of a DSO cluster, as YAML on stdout.

The Secret is left out unless ``--token`` is given: create it yourself
(``kubectl create secret generic NAME-token --from-literal=token=...``) so
that no token is ever written into a file under version control.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import manifests as M

__all__ = ["main", "render"]


def render(name: str, namespace: str, spec: dict[str, object] | None = None, token: str | None = None) -> str:
    import yaml  # crucial[k8s]

    docs = M.all_manifests(name, namespace, spec, token)
    header = (
        f"# DSO cluster {name!r} in namespace {namespace!r}: rendered by `python -m crucial.k8s render`\n"
        "# from crucial.k8s.manifests (the operator applies the same objects). Do not edit: re-render.\n"
    )

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:  # shared label dicts: no &id001 anchors
            return True

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:  # scripts as | blocks, not one escaped line
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    Dumper.add_representer(str, text)
    return header + yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crucial.k8s", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the manifests of one DSO cluster")
    r.add_argument("--name", default="dso")
    r.add_argument("--namespace", default="default")
    r.add_argument("--spec", default="{}", help="a DSOCluster spec as JSON (defaults for what it leaves out)")
    r.add_argument("--token", default=None, help="also render the token Secret (not for files you commit)")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(args.spec)
        sys.stdout.write(render(args.name, args.namespace, spec, args.token))
    except ValueError as exc:
        print(f"python -m crucial.k8s: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
