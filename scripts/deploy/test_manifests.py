"""Policy checks on the rendered manifests, beyond what the schemas say:
every context is deployed the same careful way, and the overlay stays
consistent with the base. Run by scripts/validate-deploy."""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import textwrap
import unittest
from pathlib import Path

import manifests

CONTEXTS = {"gateway", "identity", "catalog", "search", "cart", "inventory",
            "orders", "payments", "notifications", "pricing", "subscriptions",
            "reviews", "recommendations", "analytics"}
TWO_REPLICAS_FROM_THE_START = {"orders", "inventory", "payments", "subscriptions"}
DATA_DIR = "/var/lib/mercato"
# The TEST card network (`mercato test-provider`) that the payments replicas
# of the base share: a Deployment and Service of the base that is not a
# context, and that production deletes.
TEST_PROVIDER = "test-provider"
TEST_PROVIDER_URL = f"http://{TEST_PROVIDER}:8080"
PRODUCTION = "deploy/overlays/production"


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def context_deployments(objects: list[dict]) -> dict[str, dict]:
    """The Deployments of the contexts and the gateway: all but the test
    card network."""
    return {name: deployment for name, deployment in by_kind(objects, "Deployment").items()
            if name != TEST_PROVIDER}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


class Rendered(unittest.TestCase):
    """Runs every check on the base and on each overlay."""

    @classmethod
    def setUpClass(cls):
        cls.trees = {d.relative_to(manifests.ROOT).as_posix(): manifests.render(d)
                     for d in manifests.kustomizations()}

    def each_tree(self):
        self.assertIn("deploy/base", self.trees)
        self.assertIn("deploy/overlays/production", self.trees)
        for name, objects in self.trees.items():
            with self.subTest(tree=name):
                yield name, objects

    def test_one_deployment_per_context(self):
        for tree, objects in self.each_tree():
            expected = CONTEXTS if tree == PRODUCTION else CONTEXTS | {TEST_PROVIDER}
            self.assertEqual(set(by_kind(objects, "Deployment")), expected)

    def test_each_deployment_runs_its_context(self):
        for _, objects in self.each_tree():
            for name, deployment in context_deployments(objects).items():
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                self.assertEqual(container["args"], ["serve", "--service", name])
                labels = deployment["spec"]["template"]["metadata"]["labels"]
                self.assertEqual(labels["app.kubernetes.io/part-of"], "mercato")
                self.assertEqual(labels["app.kubernetes.io/component"], name)
                self.assertEqual(labels["app.kubernetes.io/name"], "mercato")

    def test_probes_on_the_http_port(self):
        for _, objects in self.each_tree():
            for name, deployment in by_kind(objects, "Deployment").items():
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                for probe, path in (("readinessProbe", "/readyz"),
                                    ("livenessProbe", "/healthz"),
                                    ("startupProbe", "/healthz")):
                    with self.subTest(deployment=name, probe=probe):
                        get = container[probe]["httpGet"]
                        self.assertEqual(get["path"], path)
                        self.assertEqual(container_port(container, get["port"]), 8080)

    def test_requests_and_limits(self):
        for _, objects in self.each_tree():
            for name, deployment in by_kind(objects, "Deployment").items():
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                resources = container["resources"]
                for bound in ("requests", "limits"):
                    for resource in ("cpu", "memory"):
                        with self.subTest(deployment=name, bound=bound, resource=resource):
                            self.assertIn(resource, resources.get(bound, {}))

    def test_non_root_read_only_and_without_privileges(self):
        for _, objects in self.each_tree():
            for name, deployment in by_kind(objects, "Deployment").items():
                with self.subTest(deployment=name):
                    pod = deployment["spec"]["template"]["spec"]
                    self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
                    self.assertGreater(pod["securityContext"]["runAsUser"], 0)
                    self.assertEqual(pod["securityContext"]["seccompProfile"]["type"],
                                     "RuntimeDefault")
                    self.assertIs(pod["automountServiceAccountToken"], False)
                    (container,) = pod["containers"]
                    security = container["securityContext"]
                    self.assertIs(security["readOnlyRootFilesystem"], True)
                    self.assertIs(security["allowPrivilegeEscalation"], False)
                    self.assertEqual(security["capabilities"]["drop"], ["ALL"])

    def test_writable_tmp_and_data_dir_are_empty_dirs(self):
        for _, objects in self.each_tree():
            for name, deployment in by_kind(objects, "Deployment").items():
                with self.subTest(deployment=name):
                    pod = deployment["spec"]["template"]["spec"]
                    volumes = {v["name"]: v for v in pod["volumes"]}
                    (container,) = pod["containers"]
                    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
                    # The test card network keeps its state in memory: no data dir.
                    paths = ("/tmp",) if name == TEST_PROVIDER else ("/tmp", DATA_DIR)
                    for path in paths:
                        self.assertIn(path, mounts)
                        self.assertIn("emptyDir", volumes[mounts[path]])

    def test_each_deployment_has_a_service_an_hpa_and_a_pdb(self):
        for _, objects in self.each_tree():
            services = by_kind(objects, "Service")
            hpas = by_kind(objects, "HorizontalPodAutoscaler")
            pdbs = by_kind(objects, "PodDisruptionBudget")
            for name, deployment in context_deployments(objects).items():
                with self.subTest(deployment=name):
                    labels = deployment["spec"]["template"]["metadata"]["labels"]
                    self.assertTrue(selects(deployment["spec"]["selector"]["matchLabels"],
                                            labels))
                    (container,) = deployment["spec"]["template"]["spec"]["containers"]

                    service = services[name]
                    self.assertTrue(selects(service["spec"]["selector"], labels))
                    (port,) = service["spec"]["ports"]
                    self.assertEqual(container_port(container, port["targetPort"]), 8080)

                    pdb = pdbs[name]
                    self.assertTrue(selects(pdb["spec"]["selector"]["matchLabels"], labels))
                    self.assertTrue("maxUnavailable" in pdb["spec"]
                                    or pdb["spec"].get("minAvailable") == 1)

                    hpa = hpas[name]
                    self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
                    self.assertEqual(hpa["spec"]["scaleTargetRef"],
                                     {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": name})
                    self.assertEqual([m["resource"]["name"] for m in hpa["spec"]["metrics"]],
                                     ["cpu"])
                    # The HPA takes over the count: a minimum below the
                    # Deployment's replicas would silently scale it down.
                    self.assertEqual(hpa["spec"]["minReplicas"], deployment["spec"]["replicas"])
                    self.assertGreater(hpa["spec"]["maxReplicas"], hpa["spec"]["minReplicas"])

            self.assertEqual(set(services) - {TEST_PROVIDER}, CONTEXTS)
            self.assertEqual(set(hpas), CONTEXTS)
            self.assertEqual(set(pdbs), CONTEXTS)

    def test_rolled_one_pod_at_a_time_without_losing_capacity(self):
        for _, objects in self.each_tree():
            for name, deployment in context_deployments(objects).items():
                with self.subTest(deployment=name):
                    strategy = deployment["spec"]["strategy"]
                    self.assertEqual(strategy["type"], "RollingUpdate")
                    self.assertEqual(strategy["rollingUpdate"],
                                     {"maxSurge": 1, "maxUnavailable": 0})

    def test_search_replicas_are_named_after_their_pods(self):
        # Each search replica reads through a consumer of its own,
        # search-<instance>; the pod name is stable across container
        # restarts and unique among the replicas.
        for _, objects in self.each_tree():
            deployment = by_kind(objects, "Deployment")["search"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e for e in container.get("env", [])}
            self.assertIn("MERCATO_SEARCH__INSTANCE", env)
            self.assertEqual(env["MERCATO_SEARCH__INSTANCE"].get("valueFrom"),
                             {"fieldRef": {"fieldPath": "metadata.name"}})
            self.assertNotIn("value", env["MERCATO_SEARCH__INSTANCE"])
            for kind in ("ConfigMap", "Secret"):
                for source in by_kind(objects, kind).values():
                    for data in ("data", "stringData"):
                        self.assertNotIn("MERCATO_SEARCH__INSTANCE",
                                         source.get(data, {}),
                                         "one name shared by every replica")

    def test_referenced_config_and_secret_keys_exist(self):
        for _, objects in self.each_tree():
            configmaps = by_kind(objects, "ConfigMap")
            secrets = by_kind(objects, "Secret")
            for name, deployment in by_kind(objects, "Deployment").items():
                (container,) = deployment["spec"]["template"]["spec"]["containers"]
                with self.subTest(deployment=name):
                    for source in container.get("envFrom", []):
                        if "configMapRef" in source:
                            self.assertIn(source["configMapRef"]["name"], configmaps)
                        if "secretRef" in source:
                            self.assertIn(source["secretRef"]["name"], secrets)
                    for env in container.get("env", []):
                        ref = env.get("valueFrom", {}).get("secretKeyRef")
                        if ref:
                            secret = secrets[ref["name"]]
                            keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
                            self.assertIn(ref["key"], keys)

    def test_shared_settings(self):
        for _, objects in self.each_tree():
            data = by_kind(objects, "ConfigMap")["mercato-config"]["data"]
            self.assertEqual(data["MERCATO_ADDR"], "0.0.0.0:8080")
            self.assertEqual(data["MERCATO_DATA_DIR"], DATA_DIR)
            self.assertEqual(data["MERCATO_LOG_FORMAT"], "json")
            self.assertRegex(data["MERCATO_STORE__URL"], r"^postgres://[^:@/]+@")
            self.assertRegex(data["MERCATO_BUS__NATS_URL"], r"^nats://")
            self.assertRegex(data["MERCATO_CACHE__REDIS_URL"], r"^rediss?://")
            for context in CONTEXTS - {"gateway"}:
                self.assertEqual(data[f"MERCATO_SERVICES__{context.upper()}"],
                                 f"http://{context}:8080")

    def test_placeholder_jwt_secret_cannot_start_a_pod(self):
        # The binary refuses a secret under 32 bytes: forgetting to replace
        # the placeholder fails loudly instead of signing with a public key.
        import base64
        for _, objects in self.each_tree():
            secret = by_kind(objects, "Secret")["mercato-secrets"]
            if "stringData" in secret:
                value = secret["stringData"]["MERCATO_AUTH__JWT_SECRET"].encode()
            else:
                value = base64.b64decode(secret["data"]["MERCATO_AUTH__JWT_SECRET"])
            if b"REPLACE_ME" in value:
                self.assertLess(len(value), 32)

    def test_every_tree_has_the_secret_keys_of_the_base(self):
        # An overlay that replaces the Secret must not drop a key a service needs.
        base = set(by_kind(self.trees["deploy/base"], "Secret")["mercato-secrets"]
                   .get("stringData", {}))
        for tree, objects in self.each_tree():
            secret = by_kind(objects, "Secret")["mercato-secrets"]
            keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
            with self.subTest(tree=tree):
                self.assertLessEqual(base, keys)

    def test_base_replicas(self):
        deployments = context_deployments(self.trees["deploy/base"])
        for name, deployment in deployments.items():
            expected = 2 if name in TWO_REPLICAS_FROM_THE_START else 1
            self.assertEqual(deployment["spec"]["replicas"], expected, name)

    def test_one_test_card_network_for_every_payments_replica(self):
        # Without a provider URL each payments replica starts a test card
        # network of its own, in memory: a refund handled by a replica that
        # did not take the charge is refused. The base runs one, shared.
        objects = self.trees["deploy/base"]
        deployment = by_kind(objects, "Deployment")[TEST_PROVIDER]
        spec = deployment["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        self.assertEqual(container["args"], ["test-provider", "--addr", "0.0.0.0:8080"])
        labels = spec["template"]["metadata"]["labels"]
        self.assertEqual(labels["app.kubernetes.io/part-of"], "mercato")
        self.assertEqual(labels["app.kubernetes.io/component"], TEST_PROVIDER)
        self.assertTrue(selects(spec["selector"]["matchLabels"], labels))
        # Its state is in memory: exactly one pod, never two side by side
        # (no HPA, no surge while rolling).
        self.assertEqual(spec["replicas"], 1)
        self.assertEqual(spec["strategy"], {"type": "Recreate"})
        self.assertNotIn(TEST_PROVIDER, set(by_kind(objects, "HorizontalPodAutoscaler")))
        service = by_kind(objects, "Service")[TEST_PROVIDER]
        self.assertTrue(selects(service["spec"]["selector"], labels))
        (port,) = service["spec"]["ports"]
        self.assertEqual(port["port"], 8080)
        self.assertEqual(container_port(container, port["targetPort"]), 8080)
        data = by_kind(objects, "ConfigMap")["mercato-config"]["data"]
        self.assertEqual(data.get("MERCATO_PAYMENTS__PROVIDER_URL"), TEST_PROVIDER_URL)

    def test_no_test_card_network_in_production(self):
        objects = self.trees[PRODUCTION]
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget"):
            self.assertNotIn(TEST_PROVIDER, set(by_kind(objects, kind)), kind)
        # The operator must name the real provider: the base's URL would
        # point at the deleted Service, and none would start a test network
        # per replica.
        data = by_kind(objects, "ConfigMap")["mercato-config"]["data"]
        url = data.get("MERCATO_PAYMENTS__PROVIDER_URL", "")
        self.assertRegex(url, r"^https://")
        self.assertNotIn(TEST_PROVIDER, url)

    def test_the_provider_url_points_at_a_test_provider_of_the_same_tree(self):
        for _, objects in self.each_tree():
            data = by_kind(objects, "ConfigMap")["mercato-config"]["data"]
            self.assertIn("MERCATO_PAYMENTS__PROVIDER_URL", data)
            if TEST_PROVIDER in data["MERCATO_PAYMENTS__PROVIDER_URL"]:
                self.assertEqual(data["MERCATO_PAYMENTS__PROVIDER_URL"], TEST_PROVIDER_URL)
                self.assertIn(TEST_PROVIDER, set(by_kind(objects, "Deployment")))
                self.assertIn(TEST_PROVIDER, set(by_kind(objects, "Service")))

    def test_production_pins_the_image(self):
        for deployment in by_kind(self.trees[PRODUCTION], "Deployment").values():
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            self.assertNotRegex(container["image"], r":(dev|latest)$|^[^:@]+$")


class Dockerfile(unittest.TestCase):
    """The image and the manifests agree on user, port and data dir."""

    def test_image_matches_the_manifests(self):
        text = (manifests.ROOT / "Dockerfile").read_text()
        self.assertRegex(text, r"(?m)^USER 10001:10001$")
        self.assertRegex(text, r"(?m)^EXPOSE 8080$")
        self.assertIn(f"MERCATO_DATA_DIR={DATA_DIR}", text)
        self.assertIn("MERCATO_ADDR=0.0.0.0:8080", text)
        self.assertIn("cargo build --release --locked -p mercato", text)
        base = manifests.render(manifests.DEPLOY / "base")
        for deployment in by_kind(base, "Deployment").values():
            self.assertEqual(deployment["spec"]["template"]["spec"]["securityContext"]
                             ["runAsUser"], 10001)


class Validator(unittest.TestCase):
    """The checks themselves can fail."""

    DEPLOYMENT = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }

    def test_a_valid_object_passes(self):
        self.assertEqual(manifests.schema_errors(self.DEPLOYMENT), [])

    def test_a_wrong_type_fails(self):
        broken = {**self.DEPLOYMENT, "spec": {**self.DEPLOYMENT["spec"], "replicas": "two"}}
        errors = manifests.schema_errors(broken)
        self.assertTrue(errors)
        self.assertTrue(all("spec.replicas" in e for e in errors), errors)

    def test_a_misspelt_field_fails(self):
        broken = {**self.DEPLOYMENT, "spec": {**self.DEPLOYMENT["spec"], "replica": 2}}
        self.assertTrue(manifests.schema_errors(broken))

    def test_an_unknown_kind_fails(self):
        self.assertTrue(manifests.schema_errors(
            {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}))

    def test_main_fails_on_an_invalid_manifest(self):
        with tempfile.TemporaryDirectory() as tmp:
            deploy = Path(tmp) / "deploy" / "base"
            deploy.mkdir(parents=True)
            (deploy / "kustomization.yaml").write_text("resources: [bad.yaml]\n")
            (deploy / "bad.yaml").write_text(textwrap.dedent("""\
                apiVersion: v1
                kind: Service
                metadata: {name: s}
                spec: {ports: [{port: "eighty"}]}
                """))
            (deploy / "stray.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n"
                                               "metadata: {name: c}\n")
            saved = manifests.ROOT, manifests.DEPLOY
            manifests.ROOT, manifests.DEPLOY = Path(tmp), Path(tmp) / "deploy"
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    status = manifests.main()
            finally:
                manifests.ROOT, manifests.DEPLOY = saved
            self.assertEqual(status, 1)
            self.assertRegex(out.getvalue(), r"FAIL deploy/base: Service/s: .*spec\.ports\.0\.port")
            self.assertIn("stray.yaml is not listed", out.getvalue())


class FallbackRenderer(unittest.TestCase):

    @unittest.skipUnless(shutil.which("kubectl") or shutil.which("kustomize"),
                         "needs kubectl or kustomize to compare with")
    def test_renders_what_kustomize_renders(self):
        tool = "kubectl" if shutil.which("kubectl") else "kustomize"
        for directory in manifests.kustomizations():
            with self.subTest(tree=str(directory)):
                def key(o):
                    return (o["kind"], o["metadata"]["name"])
                ours = sorted(manifests.render(directory, "python"), key=key)
                theirs = sorted(manifests.render(directory, tool), key=key)
                self.assertEqual([key(o) for o in ours], [key(o) for o in theirs])
                for a, b in zip(ours, theirs):
                    self.assertEqual(a, b, key(a))

    def test_refuses_what_it_does_not_implement(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "kustomization.yaml").write_text(
                "resources: []\ncommonLabels: {a: b}\n")
            with self.assertRaisesRegex(manifests.RenderError, "commonLabels"):
                manifests.build(Path(tmp))

    def test_a_delete_patch_removes_the_object_it_names(self):
        objects = [{"apiVersion": "v1", "kind": kind, "metadata": {"name": n}}
                   for kind in ("Service", "ConfigMap") for n in ("x", "xy")]
        manifests.apply_patch(Path("."), objects, {"patch": textwrap.dedent("""\
            $patch: delete
            apiVersion: v1
            kind: Service
            metadata:
              name: x
            """)})
        self.assertEqual([(o["kind"], o["metadata"]["name"]) for o in objects],
                         [("Service", "xy"), ("ConfigMap", "x"), ("ConfigMap", "xy")])
        with self.assertRaisesRegex(manifests.RenderError, "matches 0 objects"):
            manifests.apply_patch(Path("."), objects, {"patch": textwrap.dedent("""\
                $patch: delete
                apiVersion: apps/v1
                kind: Service
                metadata: {name: xy}
                """)})

    def test_refuses_other_strategic_merge_patches(self):
        objects = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                    "spec": {}}]
        with self.assertRaisesRegex(manifests.RenderError, r"\$patch: delete"):
            manifests.apply_patch(Path("."), objects, {"patch": textwrap.dedent("""\
                apiVersion: v1
                kind: Service
                metadata: {name: x}
                spec: {type: NodePort}
                """)})

    def test_patch_target_names_are_anchored(self):
        objects = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": n}, "spec": {}}
                   for n in ("cart", "cartography")]
        manifests.apply_patch(Path("."), objects, {
            "target": {"kind": "Service", "name": "cart"},
            "patch": "- op: add\n  path: /spec/type\n  value: NodePort\n"})
        self.assertEqual([o["spec"].get("type") for o in objects], ["NodePort", None])


if __name__ == "__main__":
    unittest.main()
