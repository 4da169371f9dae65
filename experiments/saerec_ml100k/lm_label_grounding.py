"""How grounded are LM intent labels? Share of LM-labelled intents whose label has a word that occurs in
the texts of the intent's top items, and share that repeat another intent's label (generic labels).

Usage: python experiments/saerec_ml100k/lm_label_grounding.py docs/saerec/ml-100k/intents.json"""

import json
import re
import sys
from collections import Counter

recs = [r for r in json.load(open(sys.argv[1])) if r.get("lm_label")]
if not recs:
    sys.exit(f"{sys.argv[1]} has no lm_label entries (run `semcollab intents --lm-labels ...`)")
words = lambda s: set(re.findall(r"[a-z][a-z'-]+", s.lower()))  # noqa: E731
grounded = sum(bool(words(r["lm_label"]) & words(" ".join(r["top_item_texts"]))) for r in recs)
counts = Counter(r["lm_label"].lower() for r in recs)
print(f"LM-labelled intents: {len(recs)}")
print(f"label word found in the intent's top-item texts: {grounded}/{len(recs)} = {grounded / len(recs):.2f}")
print(f"distinct labels: {len(counts)}; most repeated: {counts.most_common(3)}")
