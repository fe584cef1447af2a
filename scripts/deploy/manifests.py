"""Renders the Kustomize trees under deploy/ and validates every object
against the Kubernetes OpenAPI schemas, offline (kubernetes-validate ships
them). Run through scripts/validate-deploy, which provides the virtualenv.

Rendering uses `kubectl kustomize` or `kustomize build` when one is
installed. Without either, a small renderer in this file builds the subset of
Kustomize that deploy/ uses and refuses anything else, so a feature added to
the manifests cannot be silently mis-rendered; the tests compare it with
kubectl's output wherever kubectl exists.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# The oldest Kubernetes minor the manifests support and the newest the
# validator knows. autoscaling/v2 and policy/v1 are GA in both.
KUBERNETES_VERSIONS = tuple(
    os.environ.get("MERCATO_KUBERNETES_VERSIONS", "1.29.0,1.37.0").split(",")
)

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass", "StorageClass"}


class RenderError(Exception):
    pass


def kustomizations() -> list[Path]:
    """Every directory under deploy/ that holds a kustomization.yaml."""
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def render(directory: Path, renderer: str | None = None) -> list[dict]:
    renderer = renderer or os.environ.get("MERCATO_KUSTOMIZE") or default_renderer()
    if renderer == "python":
        return build(directory)
    if renderer == "kubectl":
        command = ["kubectl", "kustomize", str(directory)]
    elif renderer == "kustomize":
        command = ["kustomize", "build", str(directory)]
    else:
        raise RenderError(f"unknown renderer {renderer!r}: kubectl, kustomize or python")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def default_renderer() -> str:
    if shutil.which("kubectl"):
        return "kubectl"
    if shutil.which("kustomize"):
        return "kustomize"
    return "python"


# --- the fallback renderer ---------------------------------------------------

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "images",
                      "replicas", "configMapGenerator", "secretGenerator", "patches"}


def load_yaml_documents(path: Path) -> list[dict]:
    with path.open() as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"{path}: a document without kind/apiVersion")
    return docs


def build(directory: Path) -> list[dict]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unsupported = set(kustomization) - KUSTOMIZATION_KEYS
    if unsupported:
        raise RenderError(
            f"{directory}: {sorted(unsupported)} not supported by the fallback renderer; "
            "install kubectl or kustomize")
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        objects += build(path) if path.is_dir() else load_yaml_documents(path)
    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for generator in kustomization.get(key, []):
            apply_generator(directory, objects, kind, generator)
    for patch in kustomization.get("patches", []):
        apply_patch(directory, objects, patch)
    for image in kustomization.get("images", []):
        set_image(objects, image)
    for replica in kustomization.get("replicas", []):
        set_replicas(directory, objects, replica)
    if "namespace" in kustomization:
        set_namespace(objects, kustomization["namespace"])
    return objects


def generator_data(directory: Path, generator: dict) -> dict[str, str]:
    unsupported = set(generator) - {"name", "behavior", "type", "literals", "envs"}
    if unsupported:
        raise RenderError(f"{directory}: generator option {sorted(unsupported)} not supported "
                          "by the fallback renderer")
    lines = list(generator.get("literals", []))
    for env in generator.get("envs", []):
        lines += [line for line in (directory / env).read_text().splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    data = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            raise RenderError(f"{directory}: generator entry {line!r} is not KEY=value")
        data[key.strip()] = value
    return data


def apply_generator(directory: Path, objects: list[dict], kind: str, generator: dict) -> None:
    behavior = generator.get("behavior", "create")
    if behavior not in ("merge", "replace"):
        # Created objects get a content hash in their name, which the fallback
        # does not reproduce.
        raise RenderError(f"{directory}: generator behavior {behavior!r} not supported by "
                          "the fallback renderer (merge and replace are)")
    target = find_one(directory, objects, kind, generator["name"])
    data = generator_data(directory, generator)
    if kind == "Secret":
        if behavior == "merge":
            raise RenderError(f"{directory}: secretGenerator merge not supported by the "
                              "fallback renderer")
        target.pop("stringData", None)
        target["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        target["type"] = generator.get("type", "Opaque")
    elif behavior == "merge":
        target.setdefault("data", {}).update(data)
    else:
        target["data"] = data


def find_one(directory: Path, objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise RenderError(f"{directory}: expected one {kind} {name}, found {len(found)}")
    return found[0]


def apply_patch(directory: Path, objects: list[dict], patch: dict) -> None:
    if set(patch) == {"patch"}:
        delete_object(directory, objects, patch["patch"])
        return
    if set(patch) != {"target", "patch"} or set(patch["target"]) - {"kind", "name"}:
        raise RenderError(f"{directory}: only inline JSON 6902 patches with a kind/name "
                          "target, and inline `$patch: delete` patches, are supported by "
                          "the fallback renderer")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise RenderError(f"{directory}: strategic merge patches are not supported by the "
                          "fallback renderer")
    target = patch["target"]
    matched = [o for o in objects
               if ("kind" not in target or o["kind"] == target["kind"])
               and ("name" not in target or re.fullmatch(target["name"], o["metadata"]["name"]))]
    if not matched:
        raise RenderError(f"{directory}: patch target {target} matches nothing")
    for obj in matched:
        for operation in operations:
            json_patch(obj, operation)


def delete_object(directory: Path, objects: list[dict], text: str) -> None:
    """An inline strategic merge patch that is only `$patch: delete` of one
    object named by apiVersion, kind and name (and namespace, when given):
    removes that object. Any other strategic merge patch is refused."""
    patch = yaml.safe_load(text)
    if (not isinstance(patch, dict) or patch.get("$patch") != "delete"
            or set(patch) != {"$patch", "apiVersion", "kind", "metadata"}
            or not isinstance(patch["metadata"], dict)
            or "name" not in patch["metadata"]
            or set(patch["metadata"]) - {"name", "namespace"}):
        raise RenderError(f"{directory}: of the strategic merge patches, the fallback "
                          "renderer supports only `$patch: delete` of one object named by "
                          "apiVersion, kind and metadata.name")
    metadata = patch["metadata"]
    found = [o for o in objects
             if o["apiVersion"] == patch["apiVersion"] and o["kind"] == patch["kind"]
             and o["metadata"]["name"] == metadata["name"]
             and ("namespace" not in metadata
                  or o["metadata"].get("namespace") == metadata["namespace"])]
    if len(found) != 1:
        raise RenderError(f"{directory}: `$patch: delete` of {patch['kind']} "
                          f"{metadata['name']} matches {len(found)} objects, not one")
    objects[:] = [o for o in objects if o is not found[0]]


def json_patch(obj: dict, operation: dict) -> None:
    op, path = operation["op"], operation["path"]
    if op not in ("add", "replace", "remove"):
        raise RenderError(f"JSON patch op {op!r} not supported by the fallback renderer")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent = obj
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            parent[index] = copy.deepcopy(operation["value"])
        else:
            del parent[index]
    else:
        if op in ("replace", "remove") and last not in parent:
            raise RenderError(f"JSON patch {op} of missing path {path}")
        if op == "remove":
            del parent[last]
        else:
            parent[last] = copy.deepcopy(operation["value"])


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def set_image(objects: list[dict], image: dict) -> None:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            else:
                tag = image.get("newTag", tag)
                container["image"] = f"{name}:{tag}" if tag else name


def split_image(reference: str) -> tuple[str, str | None]:
    if "@" in reference:
        return reference.split("@", 1)[0], None
    name, sep, tag = reference.rpartition(":")
    if sep and "/" not in tag:
        return name, tag
    return reference, None


def set_replicas(directory: Path, objects: list[dict], replica: dict) -> None:
    matched = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")
               and o["metadata"]["name"] == replica["name"]]
    if not matched:
        raise RenderError(f"{directory}: replicas for unknown workload {replica['name']}")
    for obj in matched:
        obj["spec"]["replicas"] = replica["count"]


def set_namespace(objects: list[dict], namespace: str) -> None:
    for obj in objects:
        if obj["kind"] == "Namespace":
            obj["metadata"]["name"] = namespace
        elif obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


# --- validation --------------------------------------------------------------

def schema_errors(obj: dict, versions=KUBERNETES_VERSIONS) -> list[str]:
    """Strict schema validation: unknown fields are errors too, so a typo in a
    field name does not pass as an ignored extra."""
    import kubernetes_validate

    errors = []
    for version in versions:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            errors.append(f"k8s {e.version}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"k8s {version}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
    return errors


def unlisted_files(directory: Path) -> list[Path]:
    """Manifests lying in a kustomization directory that it does not list:
    they would silently not be deployed."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    listed = {(directory / r).resolve() for r in kustomization.get("resources", [])}
    return [p for p in sorted(directory.glob("*.y*ml"))
            if p.name != "kustomization.yaml" and p.resolve() not in listed]


def object_name(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def main() -> int:
    renderer = os.environ.get("MERCATO_KUSTOMIZE") or default_renderer()
    print(f"validate-deploy: rendering with {renderer}; schemas of Kubernetes "
          f"{', '.join(KUBERNETES_VERSIONS)} (strict)")
    failures = 0
    total = 0
    for directory in kustomizations():
        label = directory.relative_to(ROOT)
        for path in unlisted_files(directory):
            print(f"  FAIL {label}: {path.name} is not listed in kustomization.yaml")
            failures += 1
        try:
            objects = render(directory, renderer)
        except (RenderError, yaml.YAMLError, OSError) as e:
            print(f"  FAIL {label}: {e}")
            failures += 1
            continue
        seen = set()
        for obj in objects:
            total += 1
            name = object_name(obj)
            key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
            errors = schema_errors(obj)
            if key in seen:
                errors.append("defined twice")
            seen.add(key)
            if errors:
                failures += 1
                for error in errors:
                    print(f"  FAIL {label}: {name}: {error}")
            else:
                print(f"  ok   {label}: {name}")
    print(f"validate-deploy: {total} objects in {len(kustomizations())} kustomizations, "
          f"{failures} failed")
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
