#!/usr/bin/env python3
"""Validates the rendered manifests of one overlay of ops/deploy (run by ops/deploy/validate.sh).

Every object is checked against its schema (schemas.py): core kinds for each Kubernetes version
given, custom resources against their CRDs. Then courier_checks.py checks what no schema knows:
courier.toml against platform/server/src/config.rs, the objects against each other, and the
PrometheusRule against ops/prometheus/courier-rules.yml. Each error names the source file, the
object and the field. Exit status 0 only if there is none; the last line of stdout counts the
objects.
"""

import argparse
import os
import sys

import yaml

import courier_checks
from schemas import CoreSchemas, CrdSchemas, SchemaError

ORIGIN = "config.kubernetes.io/origin"


class Manifest:
    """One rendered object and the file it came from."""

    def __init__(self, doc, source, data_sources=None):
        self.doc = doc
        self.source = source
        # For generated ConfigMaps: data key -> the file it was made from.
        self.data_sources = data_sources or {}
        meta = doc.get("metadata") or {}
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        self.label = f"{doc.get('kind', '?')} {where}{meta.get('name', '?')}"

    @property
    def kind(self):
        return self.doc.get("kind")

    @property
    def name(self):
        return (self.doc.get("metadata") or {}).get("name")


class Report:
    def __init__(self):
        self.errors = []

    def error(self, manifest, field, message):
        """An error at `field` (dotted path, may be empty) of `manifest` (or a file path)."""
        if isinstance(manifest, Manifest):
            where = f"{manifest.source}: {manifest.label}"
        else:
            where = str(manifest)
        self.errors.append(f"{where}: {field + ': ' if field else ''}{message}")


def field_path(path):
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def generated_files(kustomization, name):
    """{data key: file} of the configMapGenerator `name` in a kustomization file."""
    with open(kustomization) as f:
        spec = yaml.safe_load(f) or {}
    for generator in spec.get("configMapGenerator", []):
        if generator.get("name") == name:
            entries = (
                e.split("=", 1) if "=" in e else (os.path.basename(e), e)
                for e in generator.get("files", [])
            )
            base = os.path.dirname(kustomization)
            return {key: os.path.normpath(os.path.join(base, path)) for key, path in entries}
    return {}


def load(rendered, overlay_dir, repo_root):
    """The objects of a `kustomize build` output made with buildMetadata: [originAnnotations]
    (the annotation is removed, so that what is validated is what gets applied)."""
    manifests = []

    def here(path):
        return os.path.relpath(os.path.normpath(os.path.join(overlay_dir, path)), repo_root)

    with open(rendered) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            annotations = doc.get("metadata", {}).get("annotations", {})
            origin = yaml.safe_load(annotations.pop(ORIGIN, "") or "{}") or {}
            if not annotations:
                doc["metadata"].pop("annotations", None)
            source = here(origin.get("path") or origin.get("configuredIn") or "?")
            data_sources = {}
            if (origin.get("configuredBy") or {}).get("kind") == "ConfigMapGenerator":
                # The generated name has a hash suffix: courier-config-<hash>.
                name = doc["metadata"]["name"].rsplit("-", 1)[0]
                files = generated_files(os.path.join(repo_root, source), name)
                data_sources = {k: os.path.relpath(v, repo_root) for k, v in files.items()}
            manifests.append(Manifest(doc, source, data_sources))
    return manifests


def validate_schemas(manifests, cores, crds, report):
    for m in manifests:
        api_version, kind = m.doc.get("apiVersion", ""), m.doc.get("kind", "")
        core_errors = {}  # (field, message) -> Kubernetes versions
        validators = [(core.version, core.validator(api_version, kind)) for core in cores]
        for version, validator in validators:
            for e in validator.iter_errors(m.doc) if validator else []:
                core_errors.setdefault((field_path(e.absolute_path), e.message), []).append(version)
        for (field, message), versions in sorted(core_errors.items()):
            schemas = "schema" if len(versions) == 1 else "schemas"
            report.error(m, field, f"{message} (Kubernetes {', '.join(versions)} {schemas})")
        if any(validator for _, validator in validators):
            continue
        try:
            found = crds.validator(api_version, kind)
        except SchemaError as e:
            report.error(m, "apiVersion", str(e))
            continue
        if found is None:
            report.error(
                m,
                "",
                f"no schema for {api_version} {kind}: neither a core kind of "
                "Kubernetes nor defined by a CRD given to the validator",
            )
            continue
        validator, crd_file = found
        for e in sorted(validator.iter_errors(m.doc), key=lambda e: list(e.absolute_path)):
            report.error(
                m, field_path(e.absolute_path), f"{e.message} (CRD {os.path.basename(crd_file)})"
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rendered", required=True, help="kustomize build output")
    parser.add_argument("--overlay", required=True, help="the overlay directory that was built")
    parser.add_argument("--repo", required=True, help="repository root")
    parser.add_argument(
        "--kube-version",
        action="append",
        required=True,
        help="Kubernetes minor version to validate core kinds for (repeatable)",
    )
    parser.add_argument("--crd", action="append", default=[], help="a CRD file (repeatable)")
    parser.add_argument("--config-rs", required=True, help="platform/server/src/config.rs")
    parser.add_argument("--rules", required=True, help="ops/prometheus/courier-rules.yml")
    args = parser.parse_args()

    report = Report()
    try:
        cores = [CoreSchemas(v) for v in args.kube_version]
        crds = CrdSchemas(cores[-1])
        for path in args.crd:
            crds.load(path)
    except (SchemaError, OSError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifests = load(args.rendered, args.overlay, args.repo)
    validate_schemas(manifests, cores, crds, report)
    courier_checks.run(manifests, args.config_rs, args.rules, report)

    overlay = os.path.relpath(args.overlay, args.repo)
    for line in report.errors:
        print(f"error: {line}", file=sys.stderr)
    if report.errors:
        print(
            f"{overlay}: {len(report.errors)} error(s) in {len(manifests)} objects", file=sys.stderr
        )
        return 1
    cel = f"; {crds.cel_rules} CEL rules of the CRDs not evaluated" if crds.cel_rules else ""
    print(
        f"{overlay}: {len(manifests)} objects valid (Kubernetes "
        f"{', '.join(args.kube_version)}; {len(crds.by_gvk)} CRD versions{cel})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
