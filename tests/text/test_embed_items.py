"""The embed settings are checked by the API itself (``embed_items``), before anything is encoded."""

from types import SimpleNamespace

import pandas as pd
import pytest

from semcollab.config import ConfigError
from semcollab.text import EmbedConfig
from semcollab.text.embed_items import check_embed_options, embed_items

SPLIT = SimpleNamespace(name="toy", train=pd.DataFrame({"item": [1, 2, 3, 3]}))


@pytest.mark.parametrize("kw,needle", [
    ({"pooling": "last"}, "pools with its own"),            # minilm is a sentence-transformers model
    ({"pooling": "max"}, "--pooling must be mean or last"),
    ({"whiten": True}, "--whiten scales the PCA components and needs --pca-dim"),
    ({"pca_dim": 4}, "at most the 3 training items of toy"),
])
def test_embed_items_refuses_before_encoding(kw, needle, monkeypatch):
    import semcollab.text.embed_items as mod

    monkeypatch.setattr(mod, "item_embeddings", lambda *a, **k: pytest.fail("encoded before the check"))
    with pytest.raises(ConfigError, match=needle):
        embed_items(SPLIT, EmbedConfig(encoder="minilm", **kw))


def test_known_encoder_width_is_checked_without_loading_it():
    assert check_embed_options("minilm", None, None, False, SPLIT) == 384
    with pytest.raises(ConfigError, match="encoder's dim"):
        check_embed_options("minilm", None, 500, False, SimpleNamespace(name="t", train=pd.DataFrame(
            {"item": range(1000)})))
