"""A tiny Qwen2-shaped model and a tokenizer trained on the spot: the transformer trainer's
test and demo model, built offline in well under a second.

`build_tiny_model(directory, corpus)` writes a complete Hugging Face model folder (config,
random weights, a byte-level BPE tokenizer with a ChatML chat template) that the trainer
loads like any downloaded model. It learns fast enough on CPU for tests to watch loss fall
and answers improve; it knows nothing until trained. Worker side: imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# ChatML, as Qwen2.5 writes it, reduced to what tunedeck's data uses: system/developer, user,
# assistant (with tool calls), tool results, and a tools block in the system turn.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role in ('system', 'developer') %}{{ messages[0].content }}\n{% endif %}"
    "# Tools\n{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if tools and loop.first and message.role in ('system', 'developer') %}"
    "{% elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant\n"
    "{% if message.content %}{{ message.content }}\n{% endif %}"
    "{% for call in message.tool_calls %}<tool_call>{{ call.function | tojson }}</tool_call>\n{% endfor %}"
    "<|im_end|>\n"
    "{% else %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BASE_CORPUS = (
    "The quick brown fox jumps over the lazy dog. You are a helpful assistant. "
    "Answer the question. Classify the support ticket into one of the categories. "
    "system user assistant tool developer yes no true false the a an of to in is it"
)


def build_tiny_model(
    directory: Path,
    corpus: Iterable[str] = (),
    *,
    vocab_size: int = 600,
    hidden_size: int = 64,
    layers: int = 2,
    context: int = 1024,
    seed: int = 0,
) -> Path:
    """Write the model folder and return it. Same corpus and seed: the same model."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    bpe = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([BASE_CORPUS, *corpus], trainer=bpe)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=context,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.save_pretrained(directory)
    config = Qwen2Config(
        vocab_size=len(wrapped),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        eos_token_id=wrapped.eos_token_id,
        pad_token_id=wrapped.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    return directory
