"""A character-level tokenizer with Qwen3's special tokens and a Qwen3-like thinking-mode chat template.

Built locally with `tokenizers` (no download), so the production path (chat template, thinking mode, answer after
`</think>`, math-verify grading) runs unchanged on a tiny model.
"""

import string

from tokenizers import AddedToken, Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast


PAD_TOKEN = "<|endoftext|>"
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<|unk|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
# Printable ASCII without the vertical tab and form feed; covers prompts, LaTeX answers and teacher templates.
CHARACTERS = [c for c in string.printable if c not in "\x0b\x0c\r"]

# Qwen3's template renders the generation prompt as `<|im_start|>assistant\n`; this one also opens the thinking
# block (Qwen3 thinking mode, as the model would start it), and `enable_thinking=False` closes it empty, as Qwen3
# does. Rendering prompt + generation prompt is an exact prefix of the rendered full conversation whenever the
# assistant message starts with "<think>\n". The generation markers let SFT train on assistant tokens only.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Return the character-level tokenizer (deterministic: same ids on every call)."""
    specials = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]
    vocab = {token: i for i, token in enumerate(specials + CHARACTERS)}
    # BPE without merges splits every string into single characters.
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK_TOKEN))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    # Non-special so that decoding with skip_special_tokens keeps the thinking block delimiters.
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in (THINK_OPEN, THINK_CLOSE)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        model_max_length=4096,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
