"""The tiny model's byte-level tokenizer: token id b is byte b, then a few special tokens.

Built with the `tokenizers` library (a BPE with no merges over the byte-level alphabet),
wrapped as a transformers `PreTrainedTokenizerFast` so `AutoTokenizer` loads what
`save_pretrained` writes and `apply_chat_template` works.
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast

BYTE_TOKENS = 256
BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
END_OF_TURN = "<|end|>"
# ids follow the bytes in this order: <bos>=256, <eos>=257, <pad>=258, roles 259..262
SPECIAL_TOKENS = (BOS, EOS, PAD, *ROLE_TOKENS)

# every turn closes with <|end|>; generation stops at <|end|> or <eos>
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}{{ message['content'] }}{{ '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def _byte_vocab() -> dict[str, int]:
    # ByteLevel maps each byte to one printable unicode char; id == byte value
    alphabet = ByteLevel.alphabet()
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(BYTE_TOKENS)}
    if set(vocab) != set(alphabet):
        raise RuntimeError("tokenizers' byte-level alphabet changed")
    return vocab


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable char table (what ByteLevel uses)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(BYTE_TOKENS):
        if b not in printable:
            printable.append(b)
            chars.append(BYTE_TOKENS + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars)}


def build_raw_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(vocab=_byte_vocab(), merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    for offset, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != BYTE_TOKENS + offset:
            raise RuntimeError(f"special token {token} did not get id {BYTE_TOKENS + offset}")
    return tokenizer


def build_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=build_raw_tokenizer(),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=1024,
        clean_up_tokenization_spaces=False,
    )
