"""Free text on events (support tickets, reviews) as numbers, offline: a sentiment score and a short vector.

:mod:`~custseq.text.model` is the fitted model (TF-IDF + truncated SVD, and VADER's sentiment) and its JSON form;
:mod:`~custseq.text.events` fits it on the events table's texts before a cutoff and adds the numbers to every
event as columns, which the event tokens and the ``text`` feature group read.

Why not a pre-trained embedding model: model2vec and fastembed download their models from a hub at run time.
WordLlama (0.4.0.post1) ships its weights and tokenizer inside the wheel and embeds offline, but only when its
loader is pointed at the package folder (by default it looks for the tokenizer in a folder the wheel does not
have and tries to download it), and it would add tokenizers, pydantic, requests and 19 MB to every install. A
TF-IDF fitted on the shop's own texts needs nothing beyond scikit-learn and learns the shop's words.
"""
