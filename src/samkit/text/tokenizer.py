"""CLIP byte-pair-encoding tokenizer of SAM 3's text encoder (32-token context).

Same ids as the official `sam3.model.tokenizer_ve.SimpleTokenizer` (clean "lower"): the text is
cleaned (see `clean_text`), lower-cased, split by CLIP's regular expression, each piece's UTF-8
bytes are mapped to printable characters and merged by the BPE ranks of the shipped vocabulary
`bpe_simple_vocab_16e6.txt.gz` (CLIP's, MIT; see `LICENSE-open_clip.txt`). A row is
`<start_of_text> ids... <end_of_text>` padded with 0 to the context length.

Rules that differ from the official code (which accepts anything):
- an empty prompt, one that is only whitespace / control characters, or a non-string raises
  `ValueError` (the official encodes "" as start + end tokens);
- a prompt longer than the context is truncated exactly as the official (the first
  `context_length - 1` tokens, then `<end_of_text>`) and a `PromptTruncatedWarning` says so.

The official cleaning runs `ftfy.fix_text`; samkit does not depend on ftfy and reproduces the
parts of it that change ordinary prompts (see `clean_text`). It does not repair mojibake (text
decoded with the wrong codec, e.g. "cafÃ©"): ftfy turns that into "café", samkit tokenizes the
characters as given.
"""

from __future__ import annotations

import gzip
import html
import itertools
import unicodedata
import warnings
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import regex
import torch
from torch import Tensor

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 32
SOT = "<start_of_text>"
EOT = "<end_of_text>"
# The merges the official tokenizer reads: lines 1 .. 49152 - 256 - 2 of the vocabulary file.
_N_MERGES = 49152 - 256 - 2

_PIECES = regex.compile(
    SOT + "|" + EOT + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_TERMINAL_ESCAPE = regex.compile(r"\x1b\[((?:\d|;)*)([a-zA-Z])")
_SINGLE_QUOTES = regex.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES = regex.compile("[\u201c-\u201f]")
_LINE_BREAKS = regex.compile("\r\n|[\r\u2028\u2029]")
_C1 = regex.compile("[\x80-\x9f]")
# Control characters ftfy's `remove_control_chars` deletes (C0 except tab / newlines / form
# feed / CR, DEL, C1 except U+0085, and the invisible format characters it lists).
_CONTROL = regex.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f\x80-\x84\x86-\x9f\u206a-\u206f\ufeff\ufff9-\ufffc"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
_LIGATURES = {
    "\u0132": "IJ",
    "\u0133": "ij",
    "\u0149": "\u02bcn",
    "\u01c4": "D\u017d",
    "\u01c5": "D\u017e",
    "\u01c6": "d\u017e",
    "\u01c7": "LJ",
    "\u01c8": "Lj",
    "\u01c9": "lj",
    "\u01ca": "NJ",
    "\u01cb": "Nj",
    "\u01cc": "nj",
    "\u01f1": "DZ",
    "\u01f2": "Dz",
    "\u01f3": "dz",
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "\u017ft",
    "\ufb06": "st",
}
_WHITESPACE = regex.compile(r"\s+")
_HTML_ENTITY = regex.compile(r"&#?[0-9A-Za-z]{1,24};")


class PromptTruncatedWarning(UserWarning):
    """A prompt had more tokens than the context and was cut (as the official tokenizer does)."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map of the 256 byte values to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the others to code points from 256 upwards in
    byte order, so no byte becomes whitespace or a control character.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # insertion order (printable bytes first) is the vocabulary order


def _fix_width(text: str) -> str:
    """ftfy's `fix_character_width`: full-width and half-width forms -> their NFKC letters."""
    return "".join(
        unicodedata.normalize("NFKC", c) if "\uff01" <= c <= "\uffee" or c == "\u3000" else c
        for c in text
    )


def _c1_to_cp1252(match: regex.Match[str]) -> str:
    """ftfy's `fix_c1_controls`: a C1 control character is read as its Windows-1252 byte."""
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined stay (then dropped)
        return match.group()


def _ftfy_like(text: str, unescape: bool) -> str:
    """One pass of the `ftfy.fix_text` steps that change prompts, in ftfy's order."""
    if unescape:
        text = _HTML_ENTITY.sub(lambda m: html.unescape(m.group()), text)
    text = _TERMINAL_ESCAPE.sub("", text)
    text = _C1.sub(_c1_to_cp1252, text)
    text = "".join(_LIGATURES.get(c, c) for c in text)
    text = _fix_width(text)
    text = _SINGLE_QUOTES.sub("'", text)
    text = _DOUBLE_QUOTES.sub('"', text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _CONTROL.sub("", text)
    return unicodedata.normalize("NFC", text)


def clean_text(text: str) -> str:
    """The official "lower" cleaning without ftfy.

    First what `ftfy.fix_text` does to prompts, repeated until nothing changes as ftfy does:
    HTML entities unescaped (only when the text has no "<"), terminal escapes removed, C1
    controls read as Windows-1252, ligatures split, full-width forms narrowed, curly quotes
    straightened, line breaks unified, control characters dropped, NFC. Then, as the official
    `basic_clean` / `whitespace_clean`: HTML-unescape twice, strip, whitespace runs -> one
    space, lower-case. Mojibake is not repaired (see the module docstring).
    """
    unescape = "<" not in text
    for _ in range(16):  # ftfy loops to a fixed point; a few passes always suffice
        fixed = _ftfy_like(text, unescape)
        if fixed == text:
            break
        text = fixed
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


def _vocab_lines() -> list[str]:
    data = resources.files("samkit.text").joinpath(VOCAB_FILE).read_bytes()
    return gzip.decompress(data).decode("utf-8").split("\n")


class ClipTokenizer:
    """CLIP BPE tokenizer with the official SAM 3 ids (vocabulary 49,408: 256 byte tokens, their
    256 end-of-word forms, 48,894 merges, `<start_of_text>` 49406, `<end_of_text>` 49407).

    Args:
        context_length: tokens per row (SAM 3: 32), start and end tokens included.
    """

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH) -> None:
        _check_context(context_length)
        self.context_length = context_length
        merges = [tuple(line.split()) for line in _vocab_lines()[1 : _N_MERGES + 1]]
        byte_chars = list(bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.decoder: dict[int, str] = {i: tok for tok, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.vocab_size = len(self.encoder)
        self.sot_token_id = self.encoder[SOT]
        self.eot_token_id = self.encoder[EOT]
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    def bpe(self, piece: str) -> list[str]:
        """Merge the characters of one byte-mapped piece by rank; the last symbol carries the
        end-of-word mark `</w>`."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = itertools.pairwise(word)
            best = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, _N_MERGES))
            if best not in self.bpe_ranks:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(word):  # every non-overlapping occurrence, left to right
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[piece] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` after cleaning, without start / end tokens (no length limit)."""
        ids: list[int] = []
        for piece in _PIECES.findall(clean_text(text)):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[tok] for tok in self.bpe(mapped))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (end-of-word marks become spaces; padding 0 is `!`, skip it)."""
        chars = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in chars)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> Tensor:
        """Tokenize prompts into a Bxcontext_length int64 tensor (0 = padding).

        Raises:
            ValueError: `texts` is empty or not a string / list of strings, or a prompt is
                empty or has no text left after cleaning.
        """
        n_ctx = self.context_length if context_length is None else context_length
        _check_context(n_ctx)
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or len(texts) == 0:
            raise ValueError(
                f"expected a text prompt or a non-empty list of them, got {type(texts).__name__}"
            )
        out = torch.zeros(len(texts), n_ctx, dtype=torch.long)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"text prompt {row} must be a string, got {type(text).__name__}: {text!r}"
                )
            ids = self.encode(text)
            if not ids:
                raise ValueError(
                    f"text prompt {row} is empty (after cleaning: {text!r}); give a noun phrase "
                    "such as 'dog'"
                )
            ids = [self.sot_token_id, *ids, self.eot_token_id]
            if len(ids) > n_ctx:
                warnings.warn(
                    f"text prompt {text[:60]!r} has {len(ids)} tokens; SAM 3 reads {n_ctx}, so it "
                    f"is cut to its first {n_ctx - 2} tokens (as the official tokenizer does)",
                    PromptTruncatedWarning,
                    stacklevel=2,
                )
                ids = [*ids[: n_ctx - 1], self.eot_token_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def _check_context(context_length: object) -> None:
    if (
        isinstance(context_length, bool)
        or not isinstance(context_length, int)
        or context_length < 3
    ):
        raise ValueError(f"context_length must be an int >= 3, got {context_length!r}")


@lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """The shared tokenizer (the vocabulary is read once per process)."""
    return ClipTokenizer(DEFAULT_CONTEXT_LENGTH)


def tokenize(texts: str | Sequence[str], context_length: int = DEFAULT_CONTEXT_LENGTH) -> Tensor:
    """`ClipTokenizer` ids of one prompt or a list of them: Bxcontext_length int64 (see
    `ClipTokenizer.__call__` for the errors and the truncation warning)."""
    return default_tokenizer()(texts, context_length)
