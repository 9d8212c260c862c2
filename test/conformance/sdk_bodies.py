"""The oracle: the REST bodies Azure's own Python SDK (azure-ai-ml, pinned in
cli/local/requirements-sdk.txt) would send for the entities each example stack declares.

Reads from stdin a JSON list of stacks as test/conformance/bodies.ts describes them (the validated
stack config, plus the names and ids Azure or content hashes decide), builds every entity with
the SDK's public classes from that config (``command(...)``, ``PipelineJob``, ``Code``,
``Environment``, ``Data``, ``Model``, ``ManagedOnlineEndpoint``, ``ManagedOnlineDeployment``),
turns each into its REST object offline (``_to_rest_object()`` and friends, no Azure account)
and prints, as JSON on stdout, the body the SDK's REST client would put on the wire
(``json.dumps(body, cls=SdkJSONEncoder, exclude_readonly=True)``, as its operations do), with the
client's api-version. One process for all stacks.

Free text (descriptions, display names) is taken from the project's bodies: it is prose, not
conformance. Everything else comes from the stack config.
"""

import json
import os
import shlex
import sys

from azure.ai.ml import Input, Output, PyTorchDistribution, command
from azure.ai.ml._restclient.arm_ml_service import _configuration as arm_configuration
from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder
from azure.ai.ml._restclient.arm_ml_service.models import OnlineEndpoint as OnlineEndpointData
from azure.ai.ml.entities import (
    Data,
    Environment,
    IdentityConfiguration,
    ManagedIdentityConfiguration,
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    PipelineJob,
    ProbeSettings,
)
from azure.ai.ml.entities._assets._artifacts.artifact import ArtifactStorageInfo
from azure.ai.ml.entities._assets._artifacts.code import Code
from azure.ai.ml.entities._builders.pipeline import Pipeline
from azure.ai.ml.entities._job.pipeline.pipeline_job_settings import PipelineJobSettings
from azure.ai.ml.operations._online_endpoint_operations import _strip_zeroes_from_traffic

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FINETUNING_DIR = os.path.join(ROOT, "finetuning_dir")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def wire(rest_object):
    """The JSON the SDK's REST client sends for a REST model (its operations' serialisation)."""
    return json.loads(json.dumps(rest_object, cls=SdkJSONEncoder, exclude_readonly=True))


def text(stack, entity, field):
    """Free text (a description, a display name) of the project's body for an entity."""
    return stack["bodies"][entity]["properties"].get(field)


def number(value):
    """A config number as a Python literal would be written (3, 5e-06, 0.2)."""
    return int(value) if isinstance(value, (int, float)) and float(value).is_integer() else value


def command_line(program, pairs):
    """A command as a user of the SDK writes it: bindings bare, every other value shell-quoted."""
    words = list(program)
    for flag, value in pairs:
        value = str(value)
        words += [flag, value if value.startswith("${{") else shlex.quote(value)]
    return " ".join(words)


def job_tags(stack):
    """Job tags: the user's tags and the stack's name."""
    return {**stack["config"]["tags"], "stack": stack["stack"]}


def code_version(stack):
    ctx = stack["context"]
    code = Code(name=ctx["assets"]["code"]["name"], version=ctx["assets"]["code"]["version"], path=FINETUNING_DIR)
    # After the upload the SDK points the version at the uploaded folder (Code._update_path).
    uri = ctx["uploads"]["code"]
    account, _, rest = uri.partition(".blob.core.windows.net/")
    container, _, relative = rest.partition("/")
    code._update_path(ArtifactStorageInfo(name=code.name, version=code.version, relative_path=relative,
                                          datastore_arm_id=None, container_name=container,
                                          storage_account_url=account + ".blob.core.windows.net/", is_file=False))
    return wire(code._to_rest_object())


def environment_version(stack, key, image, conda_file):
    asset = stack["context"]["assets"][key]
    env = Environment(name=asset["name"], version=asset["version"], image=image,
                      conda_file=os.path.join(FINETUNING_DIR, conda_file), description=text(stack, key, "description"))
    return wire(env._to_rest_object())


def data_version(stack, key):
    asset = stack["context"]["assets"][key]
    data = Data(name=asset["name"], version=asset["version"], type="uri_file", path=stack["context"]["uploads"][key],
                description=text(stack, key, "description"))
    return wire(data._to_rest_object())


def model_version(stack):
    c, ctx = stack["config"], stack["context"]
    job = ctx["jobs"]["job:finetune"]
    if c["training"]["mode"] == "script":
        tags = {"baseModel": c["baseModel"], "job": job, "servedDtype": c["training"]["servedDtype"]}
    else:
        k = c["training"]["managed"]["component"]
        tags = {"baseModel": c["baseModel"], "job": job, "trainingMode": "managed",
                "component": f"azureml://registries/{k['registry']}/components/{k['name']}/versions/{k['version']}",
                "payloadShape": "chat-list"}
    model = Model(name=ctx["assets"]["model"]["name"], version=ctx["assets"]["model"]["version"], type="mlflow_model",
                  path=f"azureml://jobs/{job}/outputs/model_output", job_name=job,
                  description=text(stack, "model", "description"), tags=tags)
    return wire(model._to_rest_object())


def prep_job(stack):
    c, ctx = stack["config"], stack["context"]
    d = c["data"]
    job = command(
        name=ctx["jobs"]["job:prep"],
        display_name=text(stack, "job:prep", "displayName"),
        experiment_name=c["training"]["experimentName"],
        command=command_line(["python", "prepare_data.py"], [
            ("--dataset", d["dataset"]), ("--split", d["split"]), ("--test-size", number(d["testSize"])),
            ("--seed", d["seed"]), ("--train-output", "${{outputs.train}}"), ("--test-output", "${{outputs.test}}")]),
        code=ctx["assets"]["code"]["id"],
        environment=ctx["assets"]["environment:prep"]["id"],
        compute=ctx["computeIds"][d["prepCluster"]["name"]],
        outputs={"train": Output(type="uri_folder", mode="rw_mount"), "test": Output(type="uri_folder", mode="rw_mount")},
        identity=ManagedIdentityConfiguration(),
        instance_count=1,
        tags=job_tags(stack),
    )
    return wire(job._to_job()._to_rest_object())


def data_inputs(stack, kind):
    """The fine-tune job's train/eval inputs: the prep job's outputs, or the registered JSONL files."""
    ctx = stack["context"]
    if "job:prep" in ctx["jobs"]:
        prep = ctx["jobs"]["job:prep"]
        if kind == "command":
            return {"train_file": Input(type="uri_folder", path=f"azureml://jobs/{prep}/outputs/train"),
                    "eval_file": Input(type="uri_folder", path=f"azureml://jobs/{prep}/outputs/test")}
        return {"train_file": Input(type="uri_file", path=f"azureml://jobs/{prep}/outputs/train/paths/train.jsonl"),
                "eval_file": Input(type="uri_file", path=f"azureml://jobs/{prep}/outputs/test/paths/test.jsonl")}
    return {"train_file": Input(type="uri_file", path=ctx["uploads"]["data:train"]),
            "eval_file": Input(type="uri_file", path=ctx["uploads"]["data:test"])}


def finetune_command_job(stack):
    c, ctx = stack["config"], stack["context"]
    h, t = c["hyperparameters"], c["training"]
    distributed = t["instanceCount"] * t["processesPerInstance"] > 1
    job = command(
        name=ctx["jobs"]["job:finetune"],
        display_name=text(stack, "job:finetune", "displayName"),
        description=text(stack, "job:finetune", "description"),
        experiment_name=t["experimentName"],
        command=command_line(["python", "fine_tune.py"], [
            ("--train-file", "${{inputs.train_file}}"), ("--eval-file", "${{inputs.eval_file}}"),
            ("--model-output", "${{outputs.model_output}}"), ("--base-model", c["baseModel"]),
            ("--epochs", h["epochs"]), ("--learning-rate", number(h["learningRate"])),
            ("--per-device-batch-size", h["perDeviceBatchSize"]), ("--max-seq-length", h["maxSeqLength"]),
            ("--warmup-ratio", number(h["warmupRatio"])), ("--lr-scheduler", h["lrScheduler"]), ("--seed", h["seed"]),
            ("--serving-dtype", t["servedDtype"]), ("--precision", t["precision"]), ("--method", t["method"]),
            ("--lora-rank", t["loraRank"])]) + " --no-log-model-to-run",
        code=ctx["assets"]["code"]["id"],
        environment=ctx["assets"]["environment:training"]["id"],
        compute=ctx["computeIds"][c["trainingCluster"]["name"]],
        inputs=data_inputs(stack, "command"),
        outputs={"model_output": Output(type="mlflow_model", mode="rw_mount")},
        identity=ManagedIdentityConfiguration(),
        instance_count=t["instanceCount"],
        distribution=PyTorchDistribution(process_count_per_instance=t["processesPerInstance"]) if distributed else None,
        tags=job_tags(stack),
    )
    return wire(job._to_job()._to_rest_object())


def finetune_pipeline_job(stack):
    """The managed mode: the registry's pipeline component as the one node of a pipeline job."""
    c, ctx = stack["config"], stack["context"]
    h, t = c["hyperparameters"], c["training"]
    k = t["managed"]["component"]
    cluster = c["trainingCluster"]["name"]
    literals = {
        "task_name": "ChatCompletion",
        "num_train_epochs": h["epochs"],
        "learning_rate": number(h["learningRate"]),
        "per_device_train_batch_size": h["perDeviceBatchSize"],
        "per_device_eval_batch_size": h["perDeviceBatchSize"],
        # The component reads max_seq_length only with pad_to_max_length true (its spec, 0.0.81).
        "pad_to_max_length": "true",
        "max_seq_length": h["maxSeqLength"],
        "lr_scheduler_type": h["lrScheduler"],
        "seed": h["seed"],
        # The registry model specs' model_specific_defaults, as the azureml-examples notebooks pass them.
        "apply_lora": "true", "merge_lora_weights": "true", "apply_deepspeed": "true", "deepspeed_stage": "2",
        "precision": "16", "gradient_accumulation_steps": 1,
        "num_nodes_finetune": t["instanceCount"],
        "number_of_gpu_to_use_finetuning": t["processesPerInstance"],
        "compute_model_import": cluster, "compute_preprocess": cluster,
        "compute_finetune": cluster, "compute_model_evaluation": cluster,
    }
    model = t["managed"]["model"]
    if model == "huggingface":
        literals["huggingface_id"] = c["baseModel"]
    else:
        literals["mlflow_model_path"] = Input(type="mlflow_model", path=f"azureml://registries/{model['registry']}/models/{model['name']}/versions/{model['version']}")
    node = Pipeline(
        name="finetune",
        component=f"azureml://registries/{k['registry']}/components/{k['name']}/versions/{k['version']}",
        inputs={**literals, "train_file_path": "${{parent.inputs.train_file}}", "validation_file_path": "${{parent.inputs.eval_file}}"},
        outputs={"mlflow_model_folder": "${{parent.outputs.model_output}}"},
    )
    job = PipelineJob(
        name=ctx["jobs"]["job:finetune"],
        display_name=text(stack, "job:finetune", "displayName"),
        description=text(stack, "job:finetune", "description"),
        experiment_name=t["experimentName"],
        jobs={"finetune": node},
        inputs=data_inputs(stack, "pipeline"),
        outputs={"model_output": Output(type="mlflow_model", mode="rw_mount")},
        settings=PipelineJobSettings(default_compute=ctx["computeIds"][cluster]),
        identity=ManagedIdentityConfiguration(),
        tags=job_tags(stack),
    )
    return wire(job._to_rest_object())


def endpoint_entity(stack):
    c, ctx = stack["config"], stack["context"]
    return ManagedOnlineEndpoint(
        name=ctx["endpointName"],
        auth_mode="key",
        description=stack["bodies"]["endpoint"]["properties"].get("description"),
        identity=IdentityConfiguration(type="user_assigned",
                                       user_assigned_identities=[ManagedIdentityConfiguration(resource_id=ctx["identityId"])]),
        # The REST enum's spelling (PublicNetworkAccessType); the SDK passes the value through.
        public_network_access="Disabled" if c["security"]["profile"] == "private" else None,
        tags=c["tags"],
    )


def deployment(stack, d):
    c, ctx = stack["config"], stack["context"]
    model = ctx["assets"]["model"]["id"] if d["model"] == "trained" else (
        f"/subscriptions/{ctx['subscriptionId']}/resourceGroups/{ctx['resourceGroup']}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{ctx['workspace']}/models/{d['model']['name']}/versions/{d['model']['version']}")
    p = d["probes"]

    def probe():
        return ProbeSettings(failure_threshold=p["failureThreshold"], success_threshold=p["successThreshold"],
                             period=p["periodSeconds"], initial_delay=p["initialDelaySeconds"], timeout=p["timeoutSeconds"])

    r = d["requestSettings"]
    dep = ManagedOnlineDeployment(
        name=ctx["deployments"][d["name"]],
        endpoint_name=ctx["endpointName"],
        model=model,
        instance_type=d["instanceType"],
        instance_count=d["instanceCount"],
        # maxQueueWaitMs: sent only when the config has it (the SDK leaves an unset value out).
        request_settings=OnlineRequestSettings(max_concurrent_requests_per_instance=r["maxConcurrentRequestsPerInstance"],
                                               request_timeout_ms=r["requestTimeoutMs"], max_queue_wait_ms=r.get("maxQueueWaitMs")),
        liveness_probe=probe(),
        readiness_probe=probe(),
        # The seeds' scoring environment: the user's variables plus where the endpoint identity lives.
        environment_variables={**d["environmentVariables"], "SUBSCRIPTION_ID": ctx["subscriptionId"],
                               "RESOURCE_GROUP_NAME": ctx["resourceGroup"], "UAI_CLIENT_ID": ctx["identityClientId"]},
        app_insights_enabled=True,
        tags=c["tags"],
    )
    return wire(dep._to_rest_object(location=ctx["location"]))


def traffic_update(stack):
    """What the SDK's documented traffic update sends: GET the endpoint, set traffic, create_or_update."""
    ctx = stack["context"]
    endpoint = ManagedOnlineEndpoint._from_rest_object(OnlineEndpointData(ctx["endpointGet"]))
    endpoint.traffic = _strip_zeroes_from_traffic(ctx["traffic"])
    endpoint.mirror_traffic = _strip_zeroes_from_traffic(ctx["mirrorTraffic"]) if ctx["mirrorTraffic"] else {}
    return wire(endpoint._to_rest_online_endpoint(location=ctx["location"]))


def sdk_bodies(stack):
    c = stack["config"]
    bodies = {"code": code_version(stack), "model": model_version(stack)}
    if c["training"]["mode"] == "script":
        bodies["environment:training"] = environment_version(stack, "environment:training", c["training"]["image"], "conda.yml")
        bodies["job:finetune"] = finetune_command_job(stack)
    else:
        bodies["job:finetune"] = finetune_pipeline_job(stack)
    if c["data"]["source"] == "ultrachat":
        bodies["environment:prep"] = environment_version(stack, "environment:prep", c["data"]["prepImage"], "conda-prep.yml")
        bodies["job:prep"] = prep_job(stack)
    else:
        bodies["data:train"] = data_version(stack, "data:train")
        bodies["data:test"] = data_version(stack, "data:test")
    bodies["endpoint"] = wire(endpoint_entity(stack)._to_rest_online_endpoint(location=stack["context"]["location"]))
    for d in c["serving"]["deployments"]:
        bodies[f"deployment:{d['name']}"] = deployment(stack, d)
    bodies["traffic"] = traffic_update(stack)
    return bodies


def default_api_version():
    """The api-version the SDK's ARM client sends: its configuration's default (no credential is used)."""
    config = arm_configuration.MachineLearningServicesMgmtClientConfiguration(credential=object(), subscription_id=ZERO_UUID)
    return config.api_version


def main():
    stacks = json.load(sys.stdin)
    json.dump({"apiVersion": default_api_version(), "stacks": {s["stack"]: sdk_bodies(s) for s in stacks}}, sys.stdout)


if __name__ == "__main__":
    main()
