"""GlobMed-Bench: scoring, answer extraction, statistics, judge, runner and report.

Modules (import what you need; ``extract`` and ``metrics`` do not import JAX):

* ``scoring``: ``predict`` with a local model's ``Decoder`` (loglik or generate); ``heldout_metrics``: ``evaluate_records``.
* ``prompting``: zero/k-shot prompts, English or item-language instructions.
* ``extract``: parse free-form answers in the 12 default languages.
* ``metrics``: bootstrap CI, macro averages, resource gap, consistency, chrF, ROUGE-L.
* ``judge``: LLM-as-judge 1-5 scores for open QA.
* ``runner`` / ``report``: the resumable models x datasets x languages sweep and its leaderboard.
* ``reasoning``: reasoning mode (thinking on, a budget, the think block stripped before parsing).
* ``position_bias``: the option-permutation pass; ``paired``: paired bootstrap of model differences,
  the resource gap and consistency, loglik-vs-generation agreement; ``fidelity``: answer language;
  ``protocol_report``: their leaderboard sections, ``summary.json`` and ``paired.png``.
"""
