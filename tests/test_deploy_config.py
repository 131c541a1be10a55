"""The deployment guide's config files (kto_pipeline/config/deploy/) parse, and what the code reads
from them is there: real KTO_PIPELINE_* settings with valid values, the job server address the
trainer submits to served by the RayCluster's head, GPUs in the GPU worker group."""

from pathlib import Path
from urllib.parse import urlparse

import ray
import yaml

from kto_pipeline.config.deployment import PREFIX, DeploymentSettings
from resources.ray_executor import executor_from_env

DEPLOY = Path(__file__).resolve().parent.parent / "kto_pipeline" / "config" / "deploy"


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "dagster-values.yaml").read_text())


def _raycluster() -> tuple[dict, dict]:
    cluster, claim = list(yaml.safe_load_all((DEPLOY / "raycluster.yaml").read_text()))
    return cluster, claim


def _code_location_env() -> dict[str, str]:
    [deployment] = _values()["dagster-user-deployments"]["deployments"]
    return {item["name"]: item["value"] for item in deployment["env"]}


def test_the_code_location_loads_definitions_with_real_settings():
    [deployment] = _values()["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"][:2] == ["--module-name", "definitions"]
    env = _code_location_env()
    settings_names = {DeploymentSettings.variable(f) for f in DeploymentSettings.__dataclass_fields__}
    assert {name for name in env if name.startswith(PREFIX)} <= settings_names  # no typo'd variable
    settings = DeploymentSettings.from_env(env)  # every value parses
    assert settings.trainer_launcher == "ray" and settings.ray_jobs_address
    assert executor_from_env(settings) is None  # steps stay in the run's pod
    from definitions import trainer_from_env

    trainer = trainer_from_env(settings)  # the code location's own wiring of these settings
    job = trainer.ray_job(Path(settings.models_root()) / "work" / "spec.json")
    assert "kto_pipeline.train.cluster_launch" in job["entrypoint"] and "--machines 2" in job["entrypoint"]
    # The models folder is on the volume the Ray pods mount at the same path.
    [mount] = deployment["volumeMounts"]
    assert settings.models_root().startswith(mount["mountPath"] + "/")


def test_the_ray_head_serves_the_job_address_and_the_gpu_group_has_gpus():
    cluster, claim = _raycluster()
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert cluster["spec"]["rayVersion"] == ray.__version__
    address = urlparse(DeploymentSettings.from_env(_code_location_env()).ray_jobs_address)
    assert address.hostname == f"{cluster['metadata']['name']}-head-svc"  # KubeRay's head service name
    [head] = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert address.port in {p["containerPort"] for p in head["ports"]}
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    [gpu_container] = groups["gpu"]["template"]["spec"]["containers"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert groups["gpu"]["maxReplicas"] >= int(_code_location_env()[DeploymentSettings.variable("trainer_machines")])
    assert claim["kind"] == "PersistentVolumeClaim" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for group in [cluster["spec"]["headGroupSpec"], *groups.values()]:
        volumes = group["template"]["spec"]["volumes"]
        assert {"claimName": claim["metadata"]["name"]} in [v.get("persistentVolumeClaim") for v in volumes]
