import pytest

from kto_pipeline.devtools.tiny_models import MARKER, TinyModelSpec, build_tiny_causal_lm


def test_a_tiny_model_folder_is_built_once_and_reused(tmp_path):
    path = build_tiny_causal_lm(tmp_path / "m")
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_causal_lm(tmp_path / "m") == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another spec"):
        build_tiny_causal_lm(tmp_path / "m", TinyModelSpec(seed=1))


def test_a_half_written_folder_is_refused_not_overwritten(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(FileExistsError):
        build_tiny_causal_lm(tmp_path / "m")
    assert not (tmp_path / "m" / MARKER).exists()


def test_the_tokenizer_round_trips_text_and_has_single_digit_tokens(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(build_tiny_causal_lm(tmp_path / "m"))
    for digit in "123456":
        assert len(tok.encode(digit, add_special_tokens=False)) == 1
    text = "Grüße: 23+45=68 ✓"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|assistant|>\n")
