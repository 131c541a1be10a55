"""`kto-pipeline demo` never trains on a random model's output: its scorer and teacher are off."""

from kto_pipeline.app.cli import demo_models_env
from kto_pipeline.config.deployment import DeploymentSettings


def test_the_demo_turns_the_scorer_and_the_teacher_off_and_tests_can_run_their_plumbing(tmp_path):
    demo = DeploymentSettings.from_env(demo_models_env(tmp_path))
    assert (demo.scorer_backend, demo.teacher_kind) == ("none", "none")
    assert demo.scorer_quality_model is None and demo.teacher_model is None
    plumbing = DeploymentSettings.from_env(demo_models_env(tmp_path, plumbing=True))
    assert (plumbing.scorer_backend, plumbing.teacher_kind) == ("transformers", "transformers")
    assert plumbing.teacher_model == plumbing.base_model == demo.base_model  # the same tiny local model
