import pytest

WORDS = ["toy", "story", "animation", "comedy", "action", "thriller", "drama", "movie", "title", "genres", "year",
         "golden", "eye", "space", "war", "love", "the", "a", "of", "1995", ":", ";", ".", "(", ")"]


def _tokenizer(path):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]")
    assert tok.tokenize("Toy Story")[0] == "toy"
    tok.save_pretrained(path)
    return tok


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A randomly initialised 1-layer BERT saved like a hub model (tests only; real runs use real weights)."""
    pytest.importorskip("transformers")
    import torch
    from transformers import BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-bert")
    _tokenizer(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A randomly initialised 1-layer causal LM (Llama architecture) for last-token pooling."""
    pytest.importorskip("transformers")
    import torch
    from transformers import LlamaConfig, LlamaModel

    path = tmp_path_factory.mktemp("tiny-llama")
    _tokenizer(path)
    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                           pad_token_id=0)).save_pretrained(path)
    return path
