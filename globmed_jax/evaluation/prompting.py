"""Evaluation prompts: zero/k-shot chat messages with English or item-language instructions.

Zero-shot prompts are exactly the training prompts (``data.pipeline.render_prompt``). k-shot
prompts prepend k solved examples as earlier (user, assistant) chat turns, each rendered by the
same ``data.prompts.user_message`` and answered with ``answer_target``.

With ``instruction_language="native"`` the instruction and field labels come from
``INSTRUCTIONS`` / ``LABELS`` in the item's language. The answer tokens inside the instructions
stay English (``yes``/``no``/``maybe``, the NLI labels, Latin option letters) because those are
the targets the models are trained and scored on. The translations were written by the authors
of this module, not by clinicians; the Yoruba, Zulu and Amharic ones are best-effort.
Explicit entries of the caller's ``PromptConfig`` always win over the table.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Any, Mapping, Sequence

from globmed_jax.data import prompts
from globmed_jax.data.pipeline import render_prompt
from globmed_jax.data.prompts import PromptConfig
from globmed_jax.data.schema import Record

log = logging.getLogger(__name__)

INSTRUCTION_LANGUAGES = ("en", "native")

# language -> task family -> instruction.
INSTRUCTIONS: Mapping[str, Mapping[str, str]] = {
    "en": dict(prompts.DEFAULT_INSTRUCTIONS),
    "zh": {
        "mcqa": "请回答以下医学选择题。只回复正确选项的字母。",
        "mcqa_option_text": "请回答以下医学选择题。只回复正确选项的内容。",
        "yes_no_maybe": "请只用 yes、no 或 maybe 回答以下医学问题。",
        "nli": "判断假设是否可以从前提中推出。只回复 entailment、neutral 或 contradiction。",
        "open_qa": "请简要回答以下医学问题。",
    },
    "es": {
        "mcqa": "Responda la siguiente pregunta médica de opción múltiple. Responda solo con la letra de la opción correcta.",
        "mcqa_option_text": "Responda la siguiente pregunta médica de opción múltiple. Responda solo con el texto de la opción correcta.",
        "yes_no_maybe": "Responda la siguiente pregunta médica solo con yes, no o maybe.",
        "nli": "Decida si la hipótesis se deduce de la premisa. Responda solo con entailment, neutral o contradiction.",
        "open_qa": "Responda brevemente la siguiente pregunta médica.",
    },
    "fr": {
        "mcqa": "Répondez à la question médicale à choix multiples suivante. Répondez uniquement par la lettre de la bonne option.",
        "mcqa_option_text": "Répondez à la question médicale à choix multiples suivante. Répondez uniquement par le texte de la bonne option.",
        "yes_no_maybe": "Répondez à la question médicale suivante uniquement par yes, no ou maybe.",
        "nli": "Déterminez si l'hypothèse découle de la prémisse. Répondez uniquement par entailment, neutral ou contradiction.",
        "open_qa": "Répondez brièvement à la question médicale suivante.",
    },
    "ar": {
        "mcqa": "أجب عن سؤال الاختيار من متعدد الطبي التالي. أجب بحرف الخيار الصحيح فقط.",
        "mcqa_option_text": "أجب عن سؤال الاختيار من متعدد الطبي التالي. أجب بنص الخيار الصحيح فقط.",
        "yes_no_maybe": "أجب عن السؤال الطبي التالي بـ yes أو no أو maybe فقط.",
        "nli": "حدّد ما إذا كانت الفرضية تنتج عن المقدمة. أجب بـ entailment أو neutral أو contradiction فقط.",
        "open_qa": "أجب عن السؤال الطبي التالي بإيجاز.",
    },
    "hi": {
        "mcqa": "निम्नलिखित बहुविकल्पीय चिकित्सा प्रश्न का उत्तर दें। केवल सही विकल्प का अक्षर लिखें।",
        "mcqa_option_text": "निम्नलिखित बहुविकल्पीय चिकित्सा प्रश्न का उत्तर दें। केवल सही विकल्प का पाठ लिखें।",
        "yes_no_maybe": "निम्नलिखित चिकित्सा प्रश्न का उत्तर केवल yes, no या maybe में दें।",
        "nli": "तय करें कि परिकल्पना आधार-कथन से निकलती है या नहीं। केवल entailment, neutral या contradiction लिखें।",
        "open_qa": "निम्नलिखित चिकित्सा प्रश्न का संक्षेप में उत्तर दें।",
    },
    "ja": {
        "mcqa": "次の医学の多肢選択問題に答えてください。正しい選択肢の記号のみを答えてください。",
        "mcqa_option_text": "次の医学の多肢選択問題に答えてください。正しい選択肢の内容のみを答えてください。",
        "yes_no_maybe": "次の医学的な質問に yes、no、maybe のいずれかのみで答えてください。",
        "nli": "仮説が前提から導かれるかを判断してください。entailment、neutral、contradiction のいずれかのみで答えてください。",
        "open_qa": "次の医学的な質問に簡潔に答えてください。",
    },
    "ko": {
        "mcqa": "다음 의학 객관식 문제에 답하십시오. 정답 선택지의 알파벳만 답하십시오.",
        "mcqa_option_text": "다음 의학 객관식 문제에 답하십시오. 정답 선택지의 내용만 답하십시오.",
        "yes_no_maybe": "다음 의학 질문에 yes, no, maybe 중 하나로만 답하십시오.",
        "nli": "가설이 전제로부터 도출되는지 판단하십시오. entailment, neutral, contradiction 중 하나로만 답하십시오.",
        "open_qa": "다음 의학 질문에 간결하게 답하십시오.",
    },
    "sw": {
        "mcqa": "Jibu swali lifuatalo la kitabibu la kuchagua jibu. Jibu kwa herufi ya chaguo sahihi pekee.",
        "mcqa_option_text": "Jibu swali lifuatalo la kitabibu la kuchagua jibu. Jibu kwa maandishi ya chaguo sahihi pekee.",
        "yes_no_maybe": "Jibu swali lifuatalo la kitabibu kwa yes, no au maybe pekee.",
        "nli": "Amua kama dhana inatokana na msingi. Jibu kwa entailment, neutral au contradiction pekee.",
        "open_qa": "Jibu swali lifuatalo la kitabibu kwa ufupi.",
    },
    "yo": {
        "mcqa": "Dáhùn ìbéèrè ìṣègùn aláṣàyàn yìí. Fi lẹ́tà àṣàyàn tó tọ̀nà nìkan dáhùn.",
        "mcqa_option_text": "Dáhùn ìbéèrè ìṣègùn aláṣàyàn yìí. Fi ọ̀rọ̀ àṣàyàn tó tọ̀nà nìkan dáhùn.",
        "yes_no_maybe": "Dáhùn ìbéèrè ìṣègùn yìí pẹ̀lú yes, no tàbí maybe nìkan.",
        "nli": "Pinnu bóyá àbá náà tẹ̀lé ìpìlẹ̀ ọ̀rọ̀ náà. Fi entailment, neutral tàbí contradiction nìkan dáhùn.",
        "open_qa": "Dáhùn ìbéèrè ìṣègùn yìí ní ṣókí.",
    },
    "zu": {
        "mcqa": "Phendula lo mbuzo wezokwelapha onezinketho. Phendula ngohlamvu lwenketho efanele kuphela.",
        "mcqa_option_text": "Phendula lo mbuzo wezokwelapha onezinketho. Phendula ngombhalo wenketho efanele kuphela.",
        "yes_no_maybe": "Phendula lo mbuzo wezokwelapha nge-yes, no noma maybe kuphela.",
        "nli": "Nquma ukuthi umcabango ulandela yini esisekelweni. Phendula nge-entailment, neutral noma contradiction kuphela.",
        "open_qa": "Phendula lo mbuzo wezokwelapha ngamafuphi.",
    },
    "am": {
        "mcqa": "የሚከተለውን የሕክምና ምርጫ ጥያቄ ይመልሱ። የትክክለኛውን አማራጭ ፊደል ብቻ ይመልሱ።",
        "mcqa_option_text": "የሚከተለውን የሕክምና ምርጫ ጥያቄ ይመልሱ። የትክክለኛውን አማራጭ ጽሑፍ ብቻ ይመልሱ።",
        "yes_no_maybe": "የሚከተለውን የሕክምና ጥያቄ በ yes፣ no ወይም maybe ብቻ ይመልሱ።",
        "nli": "መላምቱ ከመነሻ ሃሳቡ የሚከተል መሆኑን ይወስኑ። በ entailment፣ neutral ወይም contradiction ብቻ ይመልሱ።",
        "open_qa": "የሚከተለውን የሕክምና ጥያቄ በአጭሩ ይመልሱ።",
    },
}

# language -> field label key -> text (keys as in data.prompts.DEFAULT_LABELS).
_LABEL_KEYS = ("question", "options", "context", "premise", "hypothesis")
LABELS: Mapping[str, Mapping[str, str]] = {
    lang: dict(zip(_LABEL_KEYS, values)) for lang, values in {
        "en": tuple(prompts.DEFAULT_LABELS[k] for k in _LABEL_KEYS),
        "zh": ("问题", "选项", "背景", "前提", "假设"),
        "es": ("Pregunta", "Opciones", "Contexto", "Premisa", "Hipótesis"),
        "fr": ("Question", "Options", "Contexte", "Prémisse", "Hypothèse"),
        "ar": ("السؤال", "الخيارات", "السياق", "المقدمة", "الفرضية"),
        "hi": ("प्रश्न", "विकल्प", "संदर्भ", "आधार-कथन", "परिकल्पना"),
        "ja": ("質問", "選択肢", "文脈", "前提", "仮説"),
        "ko": ("질문", "선택지", "맥락", "전제", "가설"),
        "sw": ("Swali", "Chaguo", "Muktadha", "Msingi", "Dhana"),
        "yo": ("Ìbéèrè", "Àwọn àṣàyàn", "Àyíká ọ̀rọ̀", "Ìpìlẹ̀ ọ̀rọ̀", "Àbá"),
        "zu": ("Umbuzo", "Izinketho", "Isimo", "Isisekelo", "Umcabango"),
        "am": ("ጥያቄ", "አማራጮች", "አውድ", "መነሻ ሃሳብ", "መላምት"),
    }.items()
}

_warned: set[str] = set()

# The rule select_shots implements, recorded in results fingerprints: a change of the rule must
# change this text, so that stored cells computed with other shots are recomputed.
SHOT_SELECTION = ("item-seeded v1: same family, never the item's source; same dataset+language, then same "
                  "language, then the rest; each rank shuffled by random.Random(f'{seed}|{record.id}')")


def localized_config(base: PromptConfig, language: str) -> PromptConfig:
    """``base`` with the instruction/label table of ``language`` under its explicit entries.

    A language without a table keeps English (logged once)."""
    if language not in INSTRUCTIONS:
        if language not in _warned:
            _warned.add(language)
            log.warning("no translated instructions for %r; using English", language)
        return base
    instructions = dict(INSTRUCTIONS[language])
    instructions.update(dict(base.instructions))
    labels = dict(LABELS[language])
    labels.update(dict(base.labels))
    return dataclasses.replace(base, instructions=tuple(sorted(instructions.items())),
                               labels=tuple(sorted(labels.items())))


def config_for(record: Record, base: PromptConfig, instruction_language: str) -> PromptConfig:
    if instruction_language not in INSTRUCTION_LANGUAGES:
        raise ValueError(f"instruction_language must be one of {INSTRUCTION_LANGUAGES}, got {instruction_language!r}")
    return base if instruction_language == "en" else localized_config(base, record.language)


def select_shots(record: Record, pool: Sequence[Record], num_shots: int | None = None,
                 seed: int = 0) -> list[Record]:
    """Up to ``num_shots`` (all when None) solved examples for ``record`` from ``pool``.

    Only the record's task family qualifies (another family's answer format would mislead) and
    never the item itself or a translation of it. Same dataset and language come first, then the
    same language, then the rest; within a rank the order is a seeded shuffle, so different items
    see different examples but reruns see the same ones. The shuffle depends on ``seed``, the
    item's id and the pool only, never on the model, so every model gets the same shots
    (``SHOT_SELECTION`` names this rule in fingerprints)."""
    cands = [r for r in pool if r.family == record.family and r.source_id != record.source_id]
    rng = random.Random(f"{seed}|{record.id}")
    rng.shuffle(cands)
    cands.sort(key=lambda r: (r.language != record.language or r.dataset != record.dataset,
                              r.language != record.language))
    return cands if num_shots is None else cands[:num_shots]


def render(record: Record, tokenizer: Any, config: PromptConfig = PromptConfig(),
           shots: Sequence[Record] = ()) -> str:
    """The chat-template prompt text ending with the assistant header (zero-shot: identical to
    the training prompt)."""
    if not shots:
        return render_prompt(record, tokenizer, config)
    kwargs = {} if config.enable_thinking is None else {"enable_thinking": config.enable_thinking}
    return tokenizer.apply_chat_template(prompts.build_messages(record, config, shots), tokenize=False,
                                         add_generation_prompt=True, **kwargs)
