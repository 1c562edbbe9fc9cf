"""Schemas that rendered objects are validated against.

- Core Kubernetes kinds: the strict JSON schemas (unknown fields are errors) that the PyPI
  package kubernetes-validate bundles, generated from the official OpenAPI documents of each
  Kubernetes release.
- Custom resources: the openAPIV3Schema of their CustomResourceDefinitions, turned into JSON
  Schema the way the API server reads them (nullable, int-or-string, preserve-unknown-fields,
  embedded resources) and strict like `kubectl apply --validate=strict`: a field the schema does
  not declare is an error, not silently pruned. CEL rules (x-kubernetes-validations) are not
  evaluated; they are counted.
"""

import copy
import json
import re
from importlib import resources

import jsonschema
import referencing
import yaml

DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFINITIONS_ID + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaError(Exception):
    """A schema could not be found or read."""


class CoreSchemas:
    """The bundled schemas of one Kubernetes minor version (e.g. "1.33")."""

    def __init__(self, version):
        self.version = version
        root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
        self.dir = root / f"v{version}.0-local-strict"
        if not self.dir.is_dir():
            known = sorted(p.name for p in root.iterdir() if p.name.endswith("-strict"))
            raise SchemaError(f"kubernetes-validate has no schemas for {version} (has: {known})")
        definitions = json.loads((self.dir / "_definitions.json").read_text())
        self.registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()

    def validator(self, api_version, kind):
        """The validator of a core kind, or None if this is not a core kind."""
        # rbac.authorization.k8s.io/v1 -> rbac-v1, v1 -> v1 (as kubernetes-validate names them)
        name = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        path = self.dir / f"{kind.lower()}-{name}.json"
        if not path.is_file():
            return None
        schema = json.loads(path.read_text())
        return jsonschema.Draft202012Validator(schema, registry=self.registry)


class CrdSchemas:
    """JSON schemas of custom resources, from CRD files."""

    def __init__(self, core):
        self.core = core
        self.by_gvk = {}  # (group, version, kind) -> (schema, crd file)
        self.served = {}  # (group, kind) -> served versions
        self.cel_rules = 0

    def load(self, path):
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
        if not crds:
            raise SchemaError(f"{path}: no CustomResourceDefinition")
        for crd in crds:
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", False):
                    continue
                self.served.setdefault((group, kind), []).append(version["name"])
                raw = version.get("schema", {}).get("openAPIV3Schema")
                if raw is None:
                    raise SchemaError(f"{path}: {kind} {version['name']} has no openAPIV3Schema")
                schema = self._to_json_schema(copy.deepcopy(raw), root=True)
                self.by_gvk[(group, version["name"], kind)] = (schema, str(path))

    def validator(self, api_version, kind):
        """(validator, crd file) of a custom resource; None if no CRD defines its group and kind;
        SchemaError if a CRD does but does not serve this version."""
        group, _, version = api_version.rpartition("/")
        found = self.by_gvk.get((group, version, kind))
        if found is None:
            served = self.served.get((group, kind))
            if served:
                raise SchemaError(
                    f"{group} {kind}: version {version} is not served by the CRD "
                    f"(served: {', '.join(served)})"
                )
            return None
        schema, crd_file = found
        validator = jsonschema.Draft202012Validator(schema, registry=self.core.registry)
        return validator, crd_file

    def _to_json_schema(self, node, root=False, in_junction=False):
        """Rewrites one structural-schema node (and its children) in place."""
        if not isinstance(node, dict):
            return node
        self.cel_rules += len(node.pop("x-kubernetes-validations", None) or [])
        if node.get("x-kubernetes-int-or-string") and "type" not in node and "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("x-kubernetes-embedded-resource"):
            props = node.setdefault("properties", {})
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                self._to_json_schema(child, in_junction=in_junction)
        for key in ("additionalProperties", "items"):
            if isinstance(node.get(key), dict):
                self._to_json_schema(node[key], in_junction=in_junction)
        # Branches of anyOf/oneOf/allOf/not only constrain values: the fields they name are
        # declared outside them too (structural schemas), so nothing inside a branch may close
        # an object.
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key, []):
                self._to_json_schema(child, in_junction=True)
        if isinstance(node.get("not"), dict):
            self._to_json_schema(node["not"], in_junction=True)
        if (
            node.get("type") == "object"
            and not in_junction
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.pop("nullable", False) and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if root:
            # The API server validates metadata itself: use the real ObjectMeta schema.
            node.setdefault("properties", {})["metadata"] = {"$ref": OBJECT_META}
        return node
