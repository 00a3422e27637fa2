"""The `trl` rows checked for real: rendered by a tools-capable chat template, and trained on by SFTTrainer."""
import json

import pytest

from clinseek.exporters import export_run
from clinseek.report.sample import write_sample_run

# A compact tools-capable template in the style of Qwen2.5's: tools listed as JSON in the system turn, each call
# rendered from `tool_call.function.arguments` as a mapping (tojson), tool replies in <tool_response>.
CHAT_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n"
    "{%- if messages[0].role == 'system' %}{{ messages[0].content }}\n{% endif %}"
    "# Tools\n<tools>{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools><|im_end|>\n"
    "{%- elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
    "{%- elif m.role == 'assistant' %}<|im_start|>assistant\n{{ m.content or '' }}"
    "{%- for c in m.tool_calls or [] %}\n<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": "
    "{{ c.function.arguments | tojson }}}</tool_call>{%- endfor %}<|im_end|>\n"
    "{%- elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{%- endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<pad>", "<unk>"]


def _tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<pad>", unk_token="<unk>", chat_template=CHAT_TEMPLATE)


def _rows(tmp_path):
    from clinseek.exporters.hf import hf_features

    run = write_sample_run(tmp_path / "run")
    export_run(run, "trl", tmp_path / "out")
    rows = [json.loads(x) for x in open(tmp_path / "out" / "trl.jsonl")]
    return rows, hf_features


def _render(tok, row):
    return tok.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False)


def test_trl_rows_render_through_a_tools_capable_chat_template(tmp_path):
    from transformers import PreTrainedTokenizerFast  # noqa: F401 - skip early if transformers is broken

    rows, _ = _rows(tmp_path)
    tok = _tokenizer(["warm up"])
    text = _render(tok, rows[0])
    assert '"name": "ehr_latest"' in text and '"name": "finish"' in text  # tool schemas in the prompt
    assert '<tool_call>{"name": "ehr_latest", "arguments": {"names": ["heart_rate", "lactate", "creatinine"]}}' \
        in text
    assert '<tool_call>{"name": "finish", "arguments": {"answer": ["no"], "evidence": ["E1"]}}' in text
    assert "<tool_response>\nname | value" in text
    assert "null" not in text
    assert text.rstrip().endswith("<|im_end|>") and "Answer recorded." not in text


@pytest.mark.slow
def test_sft_trainer_runs_two_steps_on_a_tiny_random_model(tmp_path):
    import torch
    from datasets import Dataset
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl import SFTConfig, SFTTrainer

    rows, hf_features = _rows(tmp_path)
    tok = _tokenizer(["warm up"])
    tok = _tokenizer([_render(tok, r) for r in rows])
    for r in rows:  # the training frame wants only messages and tools
        r.pop("provenance")
    features = hf_features()
    del features["provenance"]
    ds = Dataset.from_list(rows, features=features)

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    args = SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2, per_device_train_batch_size=2,
                     learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                     max_length=1024, dataloader_num_workers=0, disable_tqdm=True, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert result.training_loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # the trainer tokenised the tool calls: their argument keys are in the vocabulary it trained on
    first = trainer.train_dataset[0]["input_ids"]
    assert tok.convert_tokens_to_ids("finish") in first and tok.convert_tokens_to_ids("lactate") in first
