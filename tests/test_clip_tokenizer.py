"""The offline CLIP BPE tokenizer gives Stable Diffusion's token ids."""

import pytest

from edgeldm.zoo.clip_bpe import VOCAB_SIZE, build_vocab_and_merges, clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return clip_tokenizer({"pad_token": "<|endoftext|>"})


def test_vocabulary_has_49408_tokens_with_clip_special_ids(tokenizer):
    vocab, merges = build_vocab_and_merges()
    assert len(vocab) == VOCAB_SIZE == 49408 == len(tokenizer)
    assert len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


@pytest.mark.parametrize("prompt,ids", [
    # ids as produced by openai/clip-vit-large-patch14's tokenizer (Stable Diffusion v1)
    ("a photo of a cat", [49406, 320, 1125, 539, 320, 2368, 49407]),
    ("A Photo Of A Cat", [49406, 320, 1125, 539, 320, 2368, 49407]),  # CLIP lower-cases
    ("an astronaut riding a horse", [49406, 550, 18376, 6765, 320, 4558, 49407]),
])
def test_stable_diffusion_token_ids(tokenizer, prompt, ids):
    assert tokenizer(prompt).input_ids == ids


def test_padding_to_77_with_sd1_and_sd2_pad_tokens():
    sd1 = clip_tokenizer({"pad_token": "<|endoftext|>"})
    sd2 = clip_tokenizer({"pad_token": "!"})
    a = sd1("a photo", padding="max_length", max_length=sd1.model_max_length).input_ids
    b = sd2("a photo", padding="max_length", max_length=sd2.model_max_length).input_ids
    assert len(a) == len(b) == 77
    assert a[4:] == [49407] * 73  # SD 1.x pads with <|endoftext|>
    assert b[4:] == [0] * 73  # SD 2.x pads with "!" (id 0)


def test_fast_tokenizer_from_the_same_files_agrees(tokenizer):
    from transformers import CLIPTokenizerFast

    from edgeldm.zoo.clip_bpe import tokenizer_files

    vocab_file, merges_file = tokenizer_files()
    fast = CLIPTokenizerFast(vocab_file=vocab_file, merges_file=merges_file)
    for prompt in ["a small red circle in the top left", "top-left: a little RED disc!!", "naïve café, 3 cubes"]:
        assert fast(prompt).input_ids == tokenizer(prompt).input_ids
