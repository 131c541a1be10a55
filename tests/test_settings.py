"""One definition per setting: every Dagster settings class and resource that mirrors a library
config takes its names, defaults and help texts from the library dataclass, and converts back to
it with one method; deployment settings are declared once with their environment variables."""

import dataclasses
import typing

import pytest

from kto_pipeline.config import DeploymentSettings, settings_env
from kto_pipeline.config.deployment import PREFIX


def _mirrors():
    from assets.balance import BalanceSettings
    from assets.dedup import DedupSettings
    from assets.score import SelectionSettings
    from assets.synthetic import SynthesisSettings
    from assets.training import EvalSettings, TrainingSettings
    from resources import Embedder, FeedbackSource, PiiRedactor, TeacherLLM

    return [
        BalanceSettings,
        DedupSettings,
        SelectionSettings,
        SynthesisSettings,
        EvalSettings,
        TrainingSettings,
        Embedder,
        FeedbackSource,
        PiiRedactor,
        TeacherLLM,
    ]


def _library_default(f: dataclasses.Field):
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("dagster_class", _mirrors(), ids=lambda c: c.__name__)
def test_dagster_settings_take_names_defaults_and_help_from_the_library(dagster_class):
    library = dagster_class.library_class
    by_name = {f.name: f for f in dataclasses.fields(library)}
    mirrored = dagster_class.library_field_names
    assert mirrored, f"{dagster_class.__name__} exposes none of {library.__name__}'s fields"
    for name in mirrored:
        pydantic_field = dagster_class.model_fields[name]
        library_field = by_name[name]
        assert pydantic_field.get_default(call_default_factory=True) == _library_default(library_field), name
        assert pydantic_field.description == library_field.metadata["help"], name
    # A field the Dagster class declares by hand must not shadow a library field of the same name.
    for name in set(dagster_class.model_fields) - set(mirrored):
        assert name not in by_name or name in _RESOURCE_ONLY.get(dagster_class.__name__, ()), (
            f"{dagster_class.__name__}.{name} redefines {library.__name__}.{name}"
        )


# Resource fields that share a library field's name but mean something else, with the reason.
_RESOURCE_ONLY = {
    # TeacherLLM: "none" turns the top-up off; the model is optional then; the device default is
    # decided at run time; timeout_s bounds the whole generation run, not one request.
    "TeacherLLM": ("kind", "model", "base_url", "api_key", "device", "timeout_s"),
}


@pytest.mark.parametrize("dagster_class", _mirrors(), ids=lambda c: c.__name__)
def test_default_settings_convert_to_the_library_defaults(dagster_class):
    library = dagster_class.library_class
    required = {
        "FeedbackSource": {"location": "/dumps"},
    }.get(dagster_class.__name__, {})
    extra = {"TeacherLLM": {"kind": "openai", "model": "m"}}.get(dagster_class.__name__, {})
    instance = dagster_class(**required)
    converted = instance.to_library(**extra)
    expected = library(**extra)
    for name in dagster_class.library_field_names:
        assert getattr(converted, name) == getattr(expected, name), name


def test_a_changed_setting_reaches_the_library():
    from assets.dedup import DedupSettings

    assert DedupSettings(num_perm=64).to_library().num_perm == 64
    from resources import PiiRedactor

    assert PiiRedactor(phone_regions=["DE"]).config().phone_regions == ("DE",)


def test_every_deployment_variable_is_its_field_name():
    for f in dataclasses.fields(DeploymentSettings):
        assert DeploymentSettings.variable(f.name) == PREFIX + f.name.upper()
        assert f.metadata["help"]


def test_deployment_settings_round_trip_through_the_environment():
    settings = DeploymentSettings(
        dumps="s3://bucket/feedback/",
        base_model="/models/tiny",
        trainer_processes=2,
        trainer_recipe={"beta": 2.0},
        teacher_temperature=0.7,
        trainer_threads=1,
    )
    values = {
        f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if getattr(settings, f.name) is not None
    }
    assert DeploymentSettings.from_env(settings_env(**values)) == settings
    assert DeploymentSettings.from_env({}) == DeploymentSettings()


def test_a_bad_deployment_variable_is_named_in_the_error():
    with pytest.raises(ValueError, match="KTO_PIPELINE_TRAINER_PROCESSES='two'"):
        DeploymentSettings.from_env({"KTO_PIPELINE_TRAINER_PROCESSES": "two"})
    with pytest.raises(ValueError, match="KTO_PIPELINE_TRAINER_RECIPE"):
        DeploymentSettings.from_env({"KTO_PIPELINE_TRAINER_RECIPE": "[1, 2]"})
    with pytest.raises(ValueError, match="unknown deployment settings: base_modle"):
        settings_env(base_modle="x")


def test_the_readme_documents_every_deployment_variable():
    from conftest import PROJECT

    readme = (PROJECT / "README.md").read_text()
    missing = [
        DeploymentSettings.variable(f.name)
        for f in dataclasses.fields(DeploymentSettings)
        if DeploymentSettings.variable(f.name) not in readme
    ]
    assert missing == []


def test_settings_types_are_dagster_config_types():
    # Tuples become lists in Dagster config; the way back restores the library's tuples.
    from resources import PiiRedactor

    assert typing.get_origin(PiiRedactor.model_fields["entities"].annotation) is list
    assert isinstance(PiiRedactor().config().entities, tuple)
