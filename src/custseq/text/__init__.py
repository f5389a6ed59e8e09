"""Free text on events (support tickets, reviews) as numbers, offline: a sentiment score and a short vector.

:mod:`~custseq.text.model` is the fitted model (TF-IDF + truncated SVD, and VADER's sentiment) and its JSON form;
:mod:`~custseq.text.events` fits it on the events table's texts before a cutoff and adds the numbers to every
event as columns, which the event tokens and the ``text`` feature group read.
"""
