"""Safe rollout (issue 22) with real parts: a real ``mlflow server`` (the pinned MLflow, on
127.0.0.1, a file store in scratch space) holding two real runs of ``npm run train:local`` (the
one helpers.trained_model() made, and one this test logs over HTTP), ``npm run serve:local`` as
the new deployment (it honours ``azureml-model-deployment``: 404 for another name), and the real
programs ``pulumi up`` runs (jobs/quality-gate.ts, jobs/smoke-test.ts, jobs/set-traffic.ts) as
subprocesses. Azure Resource Manager and Entra ID are a small fake here (HTTPS with the test
certificate of test/fixtures/tls/) that records every request: the endpoint with its traffic,
deployments, model versions, listKeys, and a token endpoint for the client secret grant.

``up`` is replayed in the order Pulumi runs the steps (test/rollout-stack.test.ts checks that
order in the program): gate → [provider] model version PUT → [provider] deployment PUT → smoke of
the deployment → traffic step → smoke through the endpoint. A step that fails stops the rest.
The MLflow client of the pinned MLflow is the oracle of the runs' eval_loss. Runs in .venv/train.
"""

import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import helpers

TLS = os.path.join(helpers.REPO_ROOT, "test", "fixtures", "tls")
SUB, RG, WS, EP = "00000000-0000-0000-0000-0000000000aa", "rg-1", "ws-1", "phi3-ep-x1"
WS_PATH = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{WS}"
EP_PATH = f"{WS_PATH}/onlineEndpoints/{EP}"
NEW = "green-bbbbbbbb"
PROMPTS = ["What is a readiness probe?", "Why does a GPU deployment take several minutes to create?"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_id(version):
    return f"{WS_PATH}/models/phi3-finetuned/versions/{version}"


class FakeAzure:
    """ARM (endpoint, deployments, model versions, listKeys) and Entra's token endpoint."""

    def __init__(self, key):
        self.key = key
        self.scoring_uri = ""
        self.reset()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return raw.decode()

            def do_GET(self):
                fake.requests.append(("GET", urlparse(self.path).path))
                self._send(*fake.get(urlparse(self.path).path))

            def do_PUT(self):
                path = urlparse(self.path).path
                fake.requests.append(("PUT", path))
                self._send(*fake.put(path, json.loads(self._body())))

            def do_POST(self):
                path = urlparse(self.path).path
                body = self._body()
                fake.requests.append(("POST", path))
                if path.endswith("/oauth2/v2.0/token"):
                    form = parse_qs(body)
                    if form.get("client_secret") != ["fake-secret"]:
                        return self._send(401, {"error": "invalid_client"})
                    return self._send(200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                                            "access_token": "fake-arm-token"})
                if path == f"{EP_PATH}/listKeys":
                    return self._send(200, {"primaryKey": fake.key, "secondaryKey": "second-key-123456"})
                self._send(404, {"error": {"code": "NoRoute", "message": path}})

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.path.join(TLS, "loopback.crt"), os.path.join(TLS, "loopback.key"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.base = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self):
        self.traffic, self.deployments, self.models, self.requests = {}, {}, {}, []

    def endpoint(self):
        return {"id": EP_PATH, "name": EP, "location": "eastus2", "identity": {"type": "SystemAssigned"},
                "properties": {"authMode": "Key", "provisioningState": "Succeeded", "scoringUri": self.scoring_uri,
                               "traffic": dict(self.traffic), "mirrorTraffic": {}}}

    def get(self, path):
        if re.match(r"^/[^/]+/v2\.0/\.well-known/openid-configuration$", path):
            base = self.base + "/" + path.split("/")[1]
            return 200, {"issuer": base + "/v2.0", "authorization_endpoint": base + "/oauth2/v2.0/authorize",
                         "token_endpoint": base + "/oauth2/v2.0/token", "jwks_uri": base + "/discovery/v2.0/keys",
                         "response_types_supported": ["code"], "subject_types_supported": ["pairwise"],
                         "id_token_signing_alg_values_supported": ["RS256"], "tenant_region_scope": "NA"}
        if path == EP_PATH:
            return 200, self.endpoint()
        if path.startswith(EP_PATH + "/deployments/"):
            name = path.rsplit("/", 1)[1]
            if name not in self.deployments:
                return 404, {"error": {"code": "ResourceNotFound", "message": name}}
            return 200, {"name": name, "properties": {"model": self.deployments[name], "provisioningState": "Succeeded"}}
        if path in self.models:
            return 200, {"properties": {"modelType": "mlflow_model", "jobName": self.models[path]}}
        return 404, {"error": {"code": "ResourceNotFound", "message": path}}

    def put(self, path, body):
        if path == EP_PATH:
            self.traffic = {k: v for k, v in body["properties"].get("traffic", {}).items() if v > 0}
            return 200, self.endpoint()
        if path.startswith(EP_PATH + "/deployments/"):
            self.deployments[path.rsplit("/", 1)[1]] = body["properties"]["model"]
            return 200, body
        if "/models/" in path:
            self.models[path] = body["properties"]["jobName"]
            return 200, body
        return 404, {"error": {"code": "NoRoute", "message": path}}

    def puts(self, pattern):
        return sum(1 for method, path in self.requests if method == "PUT" and re.search(pattern, path))


class RolloutRealPartsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from mlflow.tracking import MlflowClient

        trained = helpers.trained_model()
        store = trained["tracking_uri"]
        port = free_port()
        cls.procs = []
        mlflow_bin = os.path.join(os.path.dirname(sys.executable), "mlflow")
        cls.mlflow = cls.start([mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                                "--backend-store-uri", store,
                                "--default-artifact-root", os.path.join(helpers.scratch_dir("mlflow-artifacts"), "a")])
        cls.tracking = f"http://127.0.0.1:{port}"
        cls.wait_for(lambda: urllib.request.urlopen(cls.tracking + "/health", timeout=2).status == 200, "mlflow server")
        client = MlflowClient(cls.tracking)
        first = client.search_runs(["0"])
        assert len(first) == 1, f"expected the one run of trained_model() in {store}, found {len(first)}"
        # The second run: npm run train:local logging to the real server over HTTP.
        cls.model_b = os.path.join(helpers.scratch_dir("rollout"), "model")
        fixtures = os.path.join(helpers.REPO_ROOT, "test", "fixtures", "data")
        done = helpers.run(["npx", "--no-install", "tsx", "cli/train-local.ts", "--train-file", os.path.join(fixtures, "train.jsonl"),
                            "--eval-file", os.path.join(fixtures, "test.jsonl"), "--output", cls.model_b,
                            "--max-seq-length", "128"], env=helpers.job_env(MLFLOW_TRACKING_URI=cls.tracking))
        if done.returncode != 0:
            cls.tearDownClass()
            raise AssertionError("train:local to the mlflow server failed:\n" + done.stderr[-4000:])
        runs = client.search_runs(["0"])
        assert len(runs) == 2, f"expected 2 runs on the server, found {len(runs)}"
        cls.loss = {r.info.run_id: r.data.metrics["eval_loss"] for r in runs}
        cls.key = secrets.token_urlsafe(24)
        cls.azure = FakeAzure(cls.key)
        cls.serve = cls.start(["npx", "--no-install", "tsx", "cli/serve-local.ts", "--model", cls.model_b, "--port", "0",
                               "--deployment", NEW], env=dict(os.environ, ENDPOINT_KEY=cls.key), stdout=subprocess.PIPE)
        line = ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and "listening on" not in line:
            line = cls.serve.stdout.readline()
            if not line and cls.serve.poll() is not None:
                break
        if "listening on" not in line:
            cls.tearDownClass()
            raise AssertionError("serve:local did not start")
        cls.azure.scoring_uri = line.split("listening on ", 1)[1].strip()

    @classmethod
    def start(cls, args, env=None, stdout=subprocess.DEVNULL):
        proc = subprocess.Popen(args, cwd=helpers.REPO_ROOT, env=env or os.environ, stdout=stdout,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        cls.procs.append(proc)
        return proc

    @staticmethod
    def wait_for(check, what, seconds=120):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{what} did not start within {seconds} s")

    @classmethod
    def tearDownClass(cls):
        for proc in cls.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            if proc.stdout:
                proc.stdout.close()
        if hasattr(cls, "azure"):
            cls.azure.server.shutdown()
            cls.azure.server.server_close()

    def setUp(self):
        self.azure.reset()

    def program(self, args, **env):
        full = dict(os.environ, AZURE_SUBSCRIPTION_ID=SUB, AZURE_RESOURCE_GROUP=RG, AZUREML_WORKSPACE=WS,
                    AZUREML_ENDPOINT=EP, ARM_ENDPOINT=self.azure.base, AZURE_AUTHORITY_HOST=self.azure.base,
                    ARM_TENANT_ID="00000000-0000-0000-0000-0000000000bb", ARM_CLIENT_ID="00000000-0000-0000-0000-0000000000cc",
                    ARM_CLIENT_SECRET="fake-secret", NODE_EXTRA_CA_CERTS=os.path.join(TLS, "loopback.crt"), **env)
        done = helpers.run(["npx", "--no-install", "tsx", *args], env=full, timeout=300)
        for stream in (done.stdout, done.stderr):
            self.assertNotIn(self.key, stream)
        return done

    def serve_run(self, run_id, deployment="blue-aaaaaaaa"):
        """The endpoint serves the model version of ``run_id`` on ``deployment`` at 100%."""
        self.azure.models[model_id("1")] = run_id
        self.azure.deployments[deployment] = model_id("1")
        self.azure.traffic = {deployment: 100}

    def up(self, job, **gate):
        """Replays `pulumi up` for the run ``job``; returns the exit codes of the steps that ran."""
        exits = {}
        g = self.program(["jobs/quality-gate.ts"], AZUREML_JOB_NAME=job, MLFLOW_TRACKING_URI=self.tracking, **gate)
        exits["gate"] = g.returncode
        self.gate_output = g.stdout + g.stderr
        if g.returncode:
            return exits
        self.azure.put(model_id("2"), {"properties": {"jobName": job}})  # the provider's PUTs
        self.azure.requests.append(("PUT", model_id("2")))
        self.azure.put(f"{EP_PATH}/deployments/{NEW}", {"properties": {"model": model_id("2")}})
        self.azure.requests.append(("PUT", f"{EP_PATH}/deployments/{NEW}"))
        smoke = dict(SMOKE_PROMPTS=json.dumps(PROMPTS), SMOKE_MAX_SECONDS="120", SMOKE_MAX_NEW_TOKENS="16")
        s = self.program(["jobs/smoke-test.ts", "deployment"], SMOKE_DEPLOYMENT=NEW, **smoke)
        exits["smoke"] = s.returncode
        self.smoke_output = s.stdout + s.stderr
        if s.returncode:
            return exits
        t = self.program(["jobs/set-traffic.ts", "apply"], TRAFFIC=json.dumps({NEW: 100}), TRAFFIC_POLL_SECONDS="1")
        exits["traffic"] = t.returncode
        if t.returncode:
            return exits
        v = self.program(["jobs/smoke-test.ts", "endpoint"], TRAFFIC_LOG=t.stdout, **smoke)
        exits["verify"] = v.returncode
        return exits

    def counts(self):
        return [self.azure.puts(r"/models/"), self.azure.puts(r"/deployments/"), self.azure.puts(EP_PATH + "$")]

    def test_two_real_runs_through_the_gate(self):
        (lo_run, lo), (hi_run, hi) = sorted(self.loss.items(), key=lambda kv: kv[1])
        self.assertLess(lo, hi, "the two runs must differ in eval_loss for this test to mean anything")
        regression = (hi - lo) / lo * 100
        allowed = f"{regression / 2:.6f}"

        # Worse than the serving model by more than allowed: refused; nothing registered or changed.
        self.serve_run(lo_run)
        self.assertEqual(self.up(hi_run, GATE_MAX_REGRESSION_PERCENT=allowed), {"gate": 1})
        self.assertEqual(self.counts(), [0, 0, 0])
        self.assertEqual(self.azure.traffic, {"blue-aaaaaaaa": 100})
        m = re.search(rf"eval_loss ([\d.]+) is ([\d.]+)% worse than ([\d.]+) of the serving model phi3-finetuned:1 \(job {lo_run}, deployment blue-aaaaaaaa at 100%\); training\.gate\.maxRegressionPercent ([\d.]+): REFUSED", self.gate_output)
        self.assertIsNotNone(m, self.gate_output)
        # Values are printed with 6 significant digits, the percent with 3 decimals.
        for got, want, delta in zip(map(float, m.groups()), (hi, regression, lo, float(allowed)), (hi * 1e-5, 6e-4, lo * 1e-5, 1e-5)):
            self.assertAlmostEqual(got, want, delta=delta)
        self.assertIn("nothing is registered and no deployment or traffic changes", self.gate_output)

        # Above the absolute limit: refused the same way.
        self.azure.reset()
        self.assertEqual(self.up(lo_run, GATE_MAX_EVAL_LOSS=f"{lo / 2:.6f}"), {"gate": 1})
        self.assertEqual(self.counts(), [0, 0, 0])
        m = re.search(r"eval_loss ([\d.]+) > training\.gate\.maxEvalLoss ([\d.]+): REFUSED", self.gate_output)
        self.assertIsNotNone(m, self.gate_output)
        self.assertAlmostEqual(float(m.group(1)), lo, delta=lo * 1e-4)

        # Better than the serving model: passes; registered, deployed, smoke-tested on the real
        # model (alone, then through the endpoint), and the deployment gets the traffic.
        self.azure.reset()
        self.serve_run(hi_run)
        exits = self.up(lo_run, GATE_MAX_REGRESSION_PERCENT=allowed, GATE_MAX_EVAL_LOSS=f"{hi * 2:.6f}")
        self.assertEqual(exits, {"gate": 0, "smoke": 0, "traffic": 0, "verify": 0}, self.gate_output)
        self.assertEqual(self.counts(), [1, 1, 1])
        self.assertEqual(self.azure.traffic, {NEW: 100})
        self.assertRegex(self.smoke_output, r"2 prompt\(s\) passed")

    def test_the_smoke_reaches_a_deployment_by_name_only(self):
        self.serve_run(next(iter(self.loss)))
        done = self.program(["jobs/smoke-test.ts", "deployment"], SMOKE_DEPLOYMENT="other-cccccccc",
                            SMOKE_PROMPTS=json.dumps(PROMPTS[:1]), SMOKE_MAX_SECONDS="120")
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertRegex(done.stderr, r'deployment other-cccccccc of endpoint phi3-ep-x1 failed: prompt "What is a readiness probe\?" → HTTP 404: .*deployment other-cccccccc not found')
        self.assertIn("gets no traffic", done.stderr)
        self.assertEqual(self.counts(), [0, 0, 0])


if __name__ == "__main__":
    unittest.main()
