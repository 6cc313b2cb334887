"""GlobMed-mini: a SYNTHETIC, deterministic multilingual medical QA set for offline demos and tests.

THIS DATA IS SYNTHETIC. It is generated from a small hand-curated table of textbook medical
facts (condition -> first-line drug / causative organism / main organ affected / characteristic
sign) rendered through language-specific templates. It is not GlobMed, not a benchmark, and no
clinical conclusion should be drawn from it. The term and template translations were written by
the authors of this module and have not been reviewed by native-speaking clinicians (the Yoruba,
Zulu and Amharic ones in particular are best-effort and use loanwords where we were unsure).
Drug names stay INN/Latin-script in hi/sw/yo/zu/am and organism names stay Latin binomials
everywhere, as is common in clinical text in those settings.

Design, so that a tiny model trained on it shows measurable, interpretable effects:

* four datasets, one per task family of the real data: ``globmed_mini_mcqa`` (4 options,
  distractors from the same fact category so the answer needs the fact, answer letters
  balanced), ``globmed_mini_yes_no_maybe`` (PubMedQA-like: a clinical note as context;
  ``maybe`` when the note gives no diagnosis), ``globmed_mini_nli`` (premise = diagnosis;
  entailment / contradiction need the fact, neutral hypotheses add unrelated history) and
  ``globmed_mini_open_qa`` (the fact asked directly, the answer is the term; one item per
  phrasing, so 2 per fact in train and 1 in test);
* every item exists in every language with the same ``source_id`` (aligned translations);
* train counts are imbalanced on purpose: low-resource languages get a seeded subset
  (``low_resource_fraction``, default 15%) of the source items, the same subset in each of them;
* a ``validation`` (dev) split for few-shot prompts: ``dev_variants`` new items per fact, every
  language, training phrasings, source ids of their own (``.../validation/...``), so its shots
  are neither train nor test items (train and test are unchanged by it);
* test items use phrasings held out from training (the last template of every template list
  of three or more), so test accuracy measures knowledge of the facts, not memorised phrasings.
  Two-entry lists (the yes/no/maybe clinical notes) are shared by both splits: one training
  phrasing of "a diagnosis was made" cannot teach the concept (measured: a model trained on one
  read the held-out French notes the wrong way round, "diagnostic" having appeared only in the
  no-diagnosis training note, and got 3% of those items right). Every test item still differs
  in text from every training item, through its question or hypothesis.

``generate(config, split)`` returns ``list[Record]``; ``write_jsonl(out_dir, config)`` writes the
``<out>/<dataset>/<language>/<split>.jsonl`` layout the importers use.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
import random
import re
from typing import Callable, Iterable, Mapping, Sequence

from globmed_jax.data import records_io
from globmed_jax.data.languages import DEFAULT_LANGUAGES, get_language
from globmed_jax.data.families import MCQA, NAMES, NLI, OPEN_QA, YES_NO_MAYBE_FAMILY, get_family
from globmed_jax.data.schema import NLI_LABELS, OPTION_LETTERS, YES_NO_MAYBE, Record

DATASET_PREFIX = "globmed_mini"
FAMILIES = NAMES
MINI_SPLITS = ("train", "validation", "test")
RELATIONS = ("drug", "organism", "organ", "sign")

# Column order of every term / template table below.
_COLS = ("en", "zh", "es", "fr", "ar", "hi", "ja", "ko", "sw", "yo", "zu", "am")


def dataset_name(family: str) -> str:
    """``globmed_mini_<family>``: one dataset per task family, as real sources have."""
    if family not in FAMILIES:
        raise ValueError(f"unknown GlobMed-mini family {family!r}; expected one of {FAMILIES}")
    return f"{DATASET_PREFIX}_{family}"


def _row(line: str, cols: Sequence[str] = _COLS) -> dict[str, str]:
    parts = [p.strip() for p in line.split("|")]
    if len(parts) != len(cols):
        raise ValueError(f"term row has {len(parts)} columns, expected {len(cols)}: {line!r}")
    return dict(zip(cols, parts))


def _table(text: str, cols: Sequence[str] = _COLS) -> dict[str, dict[str, str]]:
    """Parses ``id: en|zh|...`` lines into ``{id: {lang: term}}``."""
    out = {}
    for line in text.strip().splitlines():
        key, _, rest = line.partition(":")
        out[key.strip()] = _row(rest, cols)
    return out


# ---------------------------------------------------------------------------------------------
# Terms. es/fr terms carry their article so templates stay grammatical (contractions are fixed
# after rendering, see _POSTPROCESS).
# ---------------------------------------------------------------------------------------------

CONDITIONS = _table("""
anaphylaxis: anaphylaxis|严重过敏反应|la anafilaxia|l'anaphylaxie|التأق|एनाफिलैक्सिस|アナフィラキシー|아나필락시스|anafilaksia|àléjì líle|i-anaphylaxis|አናፊላክሲስ
opioid_overdose: opioid overdose|阿片类药物过量|la sobredosis de opioides|la surdose d'opioïdes|الجرعة الزائدة من المواد الأفيونية|ओपिओइड ओवरडोज़|オピオイド過量摂取|오피오이드 과다복용|kuzidisha dozi ya opioidi|àjẹjù oògùn opioid|ukweqisa umthamo we-opioid|የኦፒዮይድ ከመጠን በላይ መውሰድ
paracetamol_overdose: paracetamol overdose|对乙酰氨基酚过量|la sobredosis de paracetamol|la surdose de paracétamol|الجرعة الزائدة من الباراسيتامول|पैरासिटामोल ओवरडोज़|アセトアミノフェン過量摂取|아세트아미노펜 과다복용|kuzidisha dozi ya paracetamol|àjẹjù paracetamol|ukweqisa umthamo we-paracetamol|የፓራሲታሞል ከመጠን በላይ መውሰድ
hypothyroidism: hypothyroidism|甲状腺功能减退症|el hipotiroidismo|l'hypothyroïdie|قصور الغدة الدرقية|हाइपोथायरायडिज्म|甲状腺機能低下症|갑상선기능저하증|upungufu wa homoni ya tezi ya thairoidi|àìtó họ́mọ̀nù ẹṣẹ́ tairọ́ọ̀dù|i-hypothyroidism|ሃይፖታይሮይዲዝም
type2_diabetes: type 2 diabetes|2型糖尿病|la diabetes tipo 2|le diabète de type 2|داء السكري من النوع الثاني|टाइप 2 मधुमेह|2型糖尿病|제2형 당뇨병|kisukari aina ya pili|àtọ̀gbẹ irú kejì|isifo sikashukela sohlobo 2|ዓይነት 2 የስኳር በሽታ
falciparum_malaria: uncomplicated falciparum malaria|无并发症的恶性疟|la malaria por falciparum no complicada|le paludisme à falciparum non compliqué|ملاريا المتصورة المنجلية غير المصحوبة بمضاعفات|बिना जटिलता वाला फाल्सीपेरम मलेरिया|合併症のない熱帯熱マラリア|합병증 없는 열대열 말라리아|malaria ya falciparum isiyo na matatizo|ibà falciparum tí kò le|umalaleveva we-falciparum ongenazinkinga|ያልተወሳሰበ የፋልሲፓረም ወባ
scabies: scabies|疥疮|la sarna|la gale|الجرب|खुजली (स्केबीज़)|疥癬|옴|upele|àrùn scabies|utwayi|እከክ
heparin_overdose: heparin overdose|肝素过量|la sobredosis de heparina|la surdose d'héparine|الجرعة الزائدة من الهيبارين|हेपरिन ओवरडोज़|ヘパリン過量投与|헤파린 과다투여|kuzidisha dozi ya heparini|àjẹjù heparin|ukweqisa umthamo we-heparin|የሄፓሪን ከመጠን በላይ መውሰድ
organophosphate_poisoning: organophosphate poisoning|有机磷中毒|la intoxicación por organofosforados|l'intoxication aux organophosphorés|التسمم بالفوسفات العضوية|ऑर्गेनोफॉस्फेट विषाक्तता|有機リン中毒|유기인계 중독|sumu ya organofosfeti|májèlé organophosphate|ubuthi be-organophosphate|የኦርጋኖፎስፌት መመረዝ
parkinsons: Parkinson's disease|帕金森病|la enfermedad de Parkinson|la maladie de Parkinson|مرض باركنسون|पार्किंसंस रोग|パーキンソン病|파킨슨병|ugonjwa wa Parkinson|àrùn Parkinson|isifo sikaParkinson|የፓርኪንሰን በሽታ
syphilis: syphilis|梅毒|la sífilis|la syphilis|الزهري|सिफलिस|梅毒|매독|kaswende|àrùn sífílísì|ugcunsula|ቂጥኝ
methanol_poisoning: methanol poisoning|甲醇中毒|la intoxicación por metanol|l'intoxication au méthanol|التسمم بالميثانول|मेथनॉल विषाक्तता|メタノール中毒|메탄올 중독|sumu ya methanoli|májèlé methanol|ubuthi be-methanol|የሜታኖል መመረዝ
tuberculosis: tuberculosis|结核病|la tuberculosis|la tuberculose|السل|क्षय रोग|結核|결핵|kifua kikuu|ikọ́ ẹ̀gbẹ|isifo sofuba|ሳንባ ነቀርሳ
cholera: cholera|霍乱|el cólera|le choléra|الكوليرا|हैजा|コレラ|콜레라|kipindupindu|àrùn onígbáméjì|ikholera|ኮሌራ
typhoid: typhoid fever|伤寒|la fiebre tifoidea|la fièvre typhoïde|حمى التيفوئيد|टाइफाइड बुखार|腸チフス|장티푸스|homa ya matumbo|ibà tàífọ́ìdì|umkhuhlane we-typhoid|ታይፎይድ ትኩሳት
leprosy: leprosy|麻风病|la lepra|la lèpre|الجذام|कुष्ठ रोग|ハンセン病|한센병|ukoma|ẹ̀tẹ̀|uchoko|የሥጋ ደዌ
tetanus: tetanus|破伤风|el tétanos|le tétanos|الكزاز|टिटनेस|破傷風|파상풍|pepopunda|àrùn tẹ́tánọ́sì|ithetanasi|ቴታነስ
diphtheria: diphtheria|白喉|la difteria|la diphtérie|الدفتيريا|डिप्थीरिया|ジフテリア|디프테리아|dondakoo|àrùn díftéríà|i-diphtheria|ዲፍቴሪያ
pertussis: whooping cough|百日咳|la tos ferina|la coqueluche|السعال الديكي|काली खांसी|百日咳|백일해|kifaduro|ikọ́ líle àwọn ọmọdé|ukhohlokhohlo|ትክትክ
lyme: Lyme disease|莱姆病|la enfermedad de Lyme|la maladie de Lyme|داء لايم|लाइम रोग|ライム病|라임병|ugonjwa wa Lyme|àrùn Lyme|isifo se-Lyme|የላይም በሽታ
plague: plague|鼠疫|la peste|la peste|الطاعون|प्लेग|ペスト|페스트|tauni|àrùn plague|ubhubhane|ቸነፈር
gonorrhoea: gonorrhoea|淋病|la gonorrea|la gonorrhée|السيلان|सूजाक|淋病|임질|kisonono|àtọ̀sí|i-gonorrhoea|ጨብጥ
anthrax: anthrax|炭疽|el carbunco|la maladie du charbon|الجمرة الخبيثة|एंथ्रेक्स|炭疽|탄저병|kimeta|àrùn anthrax|i-anthrax|የአባ ሰንጋ በሽታ
botulism: botulism|肉毒中毒|el botulismo|le botulisme|التسمم الوشيقي|बोटुलिज़्म|ボツリヌス症|보툴리누스 중독|botulismu|àrùn botulism|i-botulism|ቦቱሊዝም
cerebral_malaria: cerebral malaria|脑型疟疾|la malaria cerebral|le paludisme cérébral|الملاريا الدماغية|मस्तिष्क मलेरिया|脳マラリア|뇌말라리아|malaria ya ubongo|ibà tó kan ọpọlọ|umalaleveva wobuchopho|የአንጎል ወባ
hepatitis: hepatitis|肝炎|la hepatitis|l'hépatite|التهاب الكبد|हेपेटाइटिस|肝炎|간염|homa ya ini|ìwú ẹ̀dọ̀|ukuvuvukala kwesibindi|የጉበት ብግነት
glomerulonephritis: glomerulonephritis|肾小球肾炎|la glomerulonefritis|la glomérulonéphrite|التهاب كبيبات الكلى|ग्लोमेरुलोनेफ्राइटिस|糸球体腎炎|사구체신염|glomerulonefritisi|ìwú kíndìnrín|ukuvuvukala kwezinso|የኩላሊት ብግነት
pneumonia: pneumonia|肺炎|la neumonía|la pneumonie|الالتهاب الرئوي|निमोनिया|肺炎|폐렴|nimonia|ìwú ẹ̀dọ̀fóró|inyumoniya|የሳንባ ምች
myocardial_infarction: myocardial infarction|心肌梗死|el infarto de miocardio|l'infarctus du myocarde|احتشاء عضلة القلب|हृदयाघात|心筋梗塞|심근경색|shambulio la moyo|àrùn ọkàn òjijì|ukuhlaselwa yinhliziyo|የልብ ድካም
pancreatitis: pancreatitis|胰腺炎|la pancreatitis|la pancréatite|التهاب البنكرياس|अग्नाशयशोथ|膵炎|췌장염|uvimbe wa kongosho|ìwú pankírẹ́ásì|ukuvuvukala kwe-pancreas|የቆሽት ብግነት
appendicitis: appendicitis|阑尾炎|la apendicitis|l'appendicite|التهاب الزائدة الدودية|अपेंडिसाइटिस|虫垂炎|충수염|uvimbe wa kidole tumbo|ìwú ápẹ́ndíìsì|ukuvuvukala kwe-appendix|የትርፍ አንጀት ብግነት
cystitis: cystitis|膀胱炎|la cistitis|la cystite|التهاب المثانة|सिस्टाइटिस|膀胱炎|방광염|uvimbe wa kibofu cha mkojo|ìwú àpò ìtọ̀|ukuvuvukala kwesinye|የፊኛ ብግነት
gastritis: gastritis|胃炎|la gastritis|la gastrite|التهاب المعدة|जठरशोथ|胃炎|위염|uvimbe wa ukuta wa tumbo|ìwú ikùn|ukuvuvukala kwesisu|የጨጓራ ብግነት
encephalitis: encephalitis|脑炎|la encefalitis|l'encéphalite|التهاب الدماغ|एन्सेफलाइटिस|脳炎|뇌염|ensefalitisi|ìwú ọpọlọ|ukuvuvukala kobuchopho|የአንጎል ብግነት
conjunctivitis: conjunctivitis|结膜炎|la conjuntivitis|la conjonctivite|التهاب الملتحمة|नेत्रश्लेष्मलाशोथ|結膜炎|결막염|uvimbe wa kiwambo cha jicho|ìwú awọ ojú|ukuvuvukala kweso|የዓይን ብግነት
otitis_media: otitis media|中耳炎|la otitis media|l'otite moyenne|التهاب الأذن الوسطى|मध्य कान का संक्रमण|中耳炎|중이염|maambukizi ya sikio la kati|àkóràn etí àárín|ukutheleleka kwendlebe ephakathi|የመካከለኛ ጆሮ ብግነት
cholecystitis: cholecystitis|胆囊炎|la colecistitis|la cholécystite|التهاب المرارة|पित्ताशय शोथ|胆嚢炎|담낭염|uvimbe wa kibofu cha nyongo|ìwú àpò òróòro|ukuvuvukala kwenyongo|የሐሞት ከረጢት ብግነት
thyroiditis: thyroiditis|甲状腺炎|la tiroiditis|la thyroïdite|التهاب الغدة الدرقية|थायरॉयडाइटिस|甲状腺炎|갑상선염|uvimbe wa tezi ya thairoidi|ìwú ẹṣẹ́ tairọ́ọ̀dù|ukuvuvukala kwendlala yegilo|የታይሮይድ እጢ ብግነት
dermatitis: dermatitis|皮炎|la dermatitis|la dermatite|التهاب الجلد|त्वचाशोथ|皮膚炎|피부염|uvimbe wa ngozi|ìwú awọ ara|ukuvuvukala kwesikhumba|የቆዳ ብግነት
scurvy: scurvy|坏血病|el escorbuto|le scorbut|الإسقربوط|स्कर्वी|壊血病|괴혈병|kiseyeye|àìtó fítámìnì C|isifo sokuntuleka kukavithamini C|የቫይታሚን ሲ እጥረት
vitamin_a_deficiency: vitamin A deficiency|维生素A缺乏症|la deficiencia de vitamina A|la carence en vitamine A|نقص فيتامين أ|विटामिन ए की कमी|ビタミンA欠乏症|비타민 A 결핍증|upungufu wa vitamini A|àìtó fítámìnì A|ukuntuleka kukavithamini A|የቫይታሚን ኤ እጥረት
bells_palsy: Bell's palsy|贝尔麻痹|la parálisis de Bell|la paralysie de Bell|شلل بيل|बेल्स पाल्सी|ベル麻痺|벨 마비|kupooza kwa Bell|àrùn Bell's palsy|i-Bell's palsy|የቤል ፓልሲ
rabies: rabies|狂犬病|la rabia|la rage|داء الكلب|रेबीज़|狂犬病|광견병|kichaa cha mbwa|dìgbòlugi|i-rabies|የእብድ ውሻ በሽታ
measles: measles|麻疹|el sarampión|la rougeole|الحصبة|खसरा|麻疹|홍역|surua|ìgbóná|isimungumungwane|ኩፍኝ
asthma: asthma|哮喘|el asma|l'asthme|الربو|दमा|気管支喘息|천식|pumu|ikọ́-fée|isifuba somoya|አስም
diabetes_mellitus: diabetes mellitus|糖尿病|la diabetes mellitus|le diabète sucré|داء السكري|मधुमेह|糖尿病|당뇨병|kisukari|àtọ̀gbẹ|isifo sikashukela|የስኳር በሽታ
lupus: systemic lupus erythematosus|系统性红斑狼疮|el lupus eritematoso sistémico|le lupus érythémateux disséminé|الذئبة الحمامية الجهازية|सिस्टमिक ल्यूपस एरिथेमेटोसस|全身性エリテマトーデス|전신홍반루푸스|lupasi|àrùn lupus|i-lupus|ሉፐስ
iron_deficiency_anaemia: iron-deficiency anaemia|缺铁性贫血|la anemia ferropénica|l'anémie ferriprive|فقر الدم الناجم عن نقص الحديد|आयरन की कमी से होने वाला एनीमिया|鉄欠乏性貧血|철결핍성 빈혈|upungufu wa damu kutokana na ukosefu wa madini ya chuma|àìtó ẹ̀jẹ̀ nítorí àìtó irin|ukuntuleka kwegazi ngenxa yokuntuleka kwensimbi|የብረት እጥረት የደም ማነስ
migraine: migraine|偏头痛|la migraña|la migraine|الصداع النصفي|माइग्रेन|片頭痛|편두통|kipandauso|mígréènì|i-migraine|ማይግሬን
""")

# Drugs: localized where clinical text normally does; INN (Latin script) elsewhere.
_DRUG_COLS = ("en", "zh", "es", "fr", "ar", "ja", "ko")
_DRUGS_LOCAL = _table("""
epinephrine: epinephrine|肾上腺素|la adrenalina|l'adrénaline|الأدرينالين|アドレナリン|에피네프린
naloxone: naloxone|纳洛酮|la naloxona|la naloxone|النالوكسون|ナロキソン|날록손
acetylcysteine: acetylcysteine|乙酰半胱氨酸|la acetilcisteína|l'acétylcystéine|الأسيتيل سيستئين|アセチルシステイン|아세틸시스테인
levothyroxine: levothyroxine|左甲状腺素|la levotiroxina|la lévothyroxine|الليفوثيروكسين|レボチロキシン|레보티록신
metformin: metformin|二甲双胍|la metformina|la metformine|الميتفورمين|メトホルミン|메트포르민
artemether_lumefantrine: artemether-lumefantrine|蒿甲醚-本芴醇|el arteméter-lumefantrina|l'artéméther-luméfantrine|أرتيميثر-لوميفانترين|アルテメテル・ルメファントリン|아르테메테르-루메판트린
permethrin: permethrin|氯菊酯|la permetrina|la perméthrine|البيرميثرين|ペルメトリン|퍼메트린
protamine: protamine sulfate|硫酸鱼精蛋白|el sulfato de protamina|le sulfate de protamine|كبريتات البروتامين|プロタミン硫酸塩|황산 프로타민
atropine: atropine|阿托品|la atropina|l'atropine|الأتروبين|アトロピン|아트로핀
levodopa: levodopa|左旋多巴|la levodopa|la lévodopa|الليفودوبا|レボドパ|레보도파
benzathine_penicillin: benzathine benzylpenicillin|苄星青霉素|la penicilina G benzatínica|la benzathine benzylpénicilline|البنزاثين بنزيل بنسلين|ベンジルペニシリンベンザチン|벤자틴 페니실린
fomepizole: fomepizole|甲吡唑|el fomepizol|le fomépizole|الفوميبيزول|ホメピゾール|포메피졸
""", _DRUG_COLS)
DRUGS = {k: {lang: v.get(lang, v["en"]) for lang in _COLS} for k, v in _DRUGS_LOCAL.items()}

_ORGANISM_NAMES = {
    "m_tuberculosis": "Mycobacterium tuberculosis", "v_cholerae": "Vibrio cholerae",
    "t_pallidum": "Treponema pallidum", "s_typhi": "Salmonella Typhi",
    "m_leprae": "Mycobacterium leprae", "c_tetani": "Clostridium tetani",
    "c_diphtheriae": "Corynebacterium diphtheriae", "b_pertussis": "Bordetella pertussis",
    "b_burgdorferi": "Borrelia burgdorferi", "y_pestis": "Yersinia pestis",
    "n_gonorrhoeae": "Neisseria gonorrhoeae", "b_anthracis": "Bacillus anthracis",
    "c_botulinum": "Clostridium botulinum", "p_falciparum": "Plasmodium falciparum",
}
ORGANISMS = {k: {lang: v for lang in _COLS} for k, v in _ORGANISM_NAMES.items()}

ORGANS = _table("""
liver: the liver|肝脏|el hígado|le foie|الكبد|यकृत|肝臓|간|ini|ẹ̀dọ̀|isibindi|ጉበት
kidney: the kidney|肾脏|el riñón|le rein|الكلية|गुर्दा|腎臓|신장|figo|kíndìnrín|izinso|ኩላሊት
lung: the lung|肺|el pulmón|le poumon|الرئة|फेफड़ा|肺|폐|pafu|ẹ̀dọ̀fóró|iphaphu|ሳንባ
heart: the heart|心脏|el corazón|le cœur|القلب|हृदय|心臓|심장|moyo|ọkàn|inhliziyo|ልብ
pancreas: the pancreas|胰腺|el páncreas|le pancréas|البنكرياس|अग्न्याशय|膵臓|췌장|kongosho|pankírẹ́ásì|i-pancreas|ቆሽት
appendix: the appendix|阑尾|el apéndice|l'appendice|الزائدة الدودية|अपेंडिक्स|虫垂|충수|kidole tumbo|ápẹ́ndíìsì|i-appendix|ትርፍ አንጀት
bladder: the urinary bladder|膀胱|la vejiga urinaria|la vessie|المثانة|मूत्राशय|膀胱|방광|kibofu cha mkojo|àpò ìtọ̀|isinye|ፊኛ
stomach: the stomach|胃|el estómago|l'estomac|المعدة|आमाशय|胃|위|tumbo|ikùn|isisu|ጨጓራ
brain: the brain|脑|el cerebro|le cerveau|الدماغ|मस्तिष्क|脳|뇌|ubongo|ọpọlọ|ubuchopho|አንጎል
eye: the eye|眼|el ojo|l'œil|العين|आँख|眼|눈|jicho|ojú|iso|ዓይን
ear: the ear|耳|el oído|l'oreille|الأذن|कान|耳|귀|sikio|etí|indlebe|ጆሮ
gallbladder: the gallbladder|胆囊|la vesícula biliar|la vésicule biliaire|المرارة|पित्ताशय|胆嚢|담낭|kibofu cha nyongo|àpò òróòro|inyongo|ሐሞት ከረጢት
thyroid: the thyroid gland|甲状腺|la glándula tiroides|la glande thyroïde|الغدة الدرقية|थायरॉयड ग्रंथि|甲状腺|갑상선|tezi ya thairoidi|ẹṣẹ́ tairọ́ọ̀dù|indlala yegilo|የታይሮይድ እጢ
skin: the skin|皮肤|la piel|la peau|الجلد|त्वचा|皮膚|피부|ngozi|awọ ara|isikhumba|ቆዳ
""")

SIGNS = _table("""
bleeding_gums: bleeding gums|牙龈出血|el sangrado de las encías|le saignement des gencives|نزيف اللثة|मसूड़ों से खून आना|歯肉出血|잇몸 출혈|fizi kutoa damu|ẹ̀jẹ̀ láti inú erìgì|ukopha kwezinsini|የድድ መድማት
night_blindness: night blindness|夜盲|la ceguera nocturna|la cécité nocturne|العشى الليلي|रतौंधी|夜盲|야맹증|kutoona usiku|àìríran lálẹ́|ubumpumputhe basebusuku|የሌሊት ዓይነ ስውርነት
lockjaw: lockjaw|牙关紧闭|el trismo|le trismus|تشنج الفك|जबड़े का जकड़ जाना|牙関緊急|개구장애|kukaza kwa taya|àgbọ̀n tó le koko|ukukhiyeka komhlathi|የመንጋጋ መቆለፍ
facial_paralysis: one-sided facial paralysis|单侧面瘫|la parálisis facial unilateral|la paralysie faciale unilatérale|شلل أحد جانبي الوجه|चेहरे के एक तरफ़ का लकवा|片側の顔面麻痺|한쪽 얼굴 마비|kupooza upande mmoja wa uso|ẹ̀gbẹ́ kan ojú tó rọ|ukukhubazeka kohlangothi olulodwa lobuso|የአንድ ወገን የፊት ሽባነት
hydrophobia: fear of water|恐水症|la hidrofobia|l'hydrophobie|رهاب الماء|पानी से डर|恐水症|공수증|kuogopa maji|ìbẹ̀rù omi|ukwesaba amanzi|ውሃ መፍራት
resting_tremor: resting tremor|静止性震颤|el temblor en reposo|le tremblement de repos|الرعاش أثناء الراحة|आराम की अवस्था में कंपन|安静時振戦|안정 시 떨림|kutetemeka wakati wa kupumzika|gbígbọ̀n ara nígbà ìsinmi|ukuthuthumela uma uphumule|በእረፍት ጊዜ መንቀጥቀጥ
koplik_spots: Koplik spots|柯氏斑|el signo de Koplik|le signe de Koplik|بقع كوبليك|कोप्लिक धब्बे|コプリック斑|코플릭 반점|madoa ya Koplik|àmì Koplik|amachashaza e-Koplik|የኮፕሊክ ነጠብጣቦች
wheezing: wheezing|哮鸣音|la respiración sibilante|la respiration sifflante|الأزيز|घरघराहट|喘鳴|천명음|kupumua kwa mluzi|mímí tó ń dún bí fèrè|ukuhefuzela okunomsindo|የሚያፏጭ አተነፋፈስ
excessive_thirst: excessive thirst|烦渴多饮|la sed excesiva|la soif excessive|العطش الشديد|अत्यधिक प्यास|強い口渇|심한 갈증|kiu kali|òùngbẹ tó pọ̀ jù|ukoma ngokweqile|ከፍተኛ ጥማት
butterfly_rash: butterfly-shaped facial rash|蝶形红斑|el eritema facial en alas de mariposa|l'éruption faciale en ailes de papillon|طفح الفراشة على الوجه|चेहरे पर तितली के आकार के चकत्ते|蝶形紅斑|나비 모양 홍반|upele wenye umbo la kipepeo usoni|èéyọ bí labalábá lójú|ukuqubuka okunjengovemvane ebusweni|በፊት ላይ የቢራቢሮ ቅርጽ ያለው ሽፍታ
spoon_nails: spoon-shaped nails|匙状甲|la coiloniquia|la koïlonychie|الأظافر الملعقية|चम्मच के आकार के नाखून|さじ状爪|숟가락 모양 손톱|kucha zenye umbo la kijiko|èékánná tó rí bí ṣíbí|izinzipho ezimise okwesipuni|የማንኪያ ቅርጽ ያላቸው ጥፍሮች
throbbing_headache: throbbing one-sided headache|单侧搏动性头痛|la cefalea pulsátil unilateral|la céphalée pulsatile unilatérale|صداع نابض في جانب واحد من الرأس|सिर के एक तरफ़ धड़कता हुआ दर्द|片側の拍動性頭痛|한쪽의 박동성 두통|maumivu ya kichwa yanayopwita upande mmoja|ẹ̀fọ́rí tó ń lù ní ẹ̀gbẹ́ kan orí|ikhanda elishaya uhlangothi olulodwa|በአንድ ወገን የሚመታ ራስ ምታት
""")

TERMS: dict[str, dict[str, dict[str, str]]] = {
    "drug": DRUGS, "organism": ORGANISMS, "organ": ORGANS, "sign": SIGNS}


@dataclasses.dataclass(frozen=True)
class Fact:
    """``answer`` (a key of ``TERMS[relation]``) is the correct value of ``relation`` for ``condition``."""

    id: str
    relation: str
    condition: str
    answer: str


def _facts(relation: str, pairs: str) -> tuple[Fact, ...]:
    out = []
    for pair in pairs.split():
        condition, answer = pair.split("=")
        out.append(Fact(f"{relation}.{condition}", relation, condition, answer))
    return tuple(out)


# Each answer is the standard textbook one, and no distractor of the same relation is also a
# correct answer for the condition (checked when building the table, e.g. iron-deficiency
# anaemia and hypothyroidism are not both in "sign" because both can cause cold intolerance).
FACTS: tuple[Fact, ...] = (
    _facts("drug", """
        anaphylaxis=epinephrine opioid_overdose=naloxone paracetamol_overdose=acetylcysteine
        hypothyroidism=levothyroxine type2_diabetes=metformin falciparum_malaria=artemether_lumefantrine
        scabies=permethrin heparin_overdose=protamine organophosphate_poisoning=atropine
        parkinsons=levodopa syphilis=benzathine_penicillin methanol_poisoning=fomepizole""")
    + _facts("organism", """
        tuberculosis=m_tuberculosis cholera=v_cholerae syphilis=t_pallidum typhoid=s_typhi
        leprosy=m_leprae tetanus=c_tetani diphtheria=c_diphtheriae pertussis=b_pertussis
        lyme=b_burgdorferi plague=y_pestis gonorrhoea=n_gonorrhoeae anthrax=b_anthracis
        botulism=c_botulinum cerebral_malaria=p_falciparum""")
    + _facts("organ", """
        hepatitis=liver glomerulonephritis=kidney pneumonia=lung myocardial_infarction=heart
        pancreatitis=pancreas appendicitis=appendix cystitis=bladder gastritis=stomach
        encephalitis=brain conjunctivitis=eye otitis_media=ear cholecystitis=gallbladder
        thyroiditis=thyroid dermatitis=skin""")
    + _facts("sign", """
        scurvy=bleeding_gums vitamin_a_deficiency=night_blindness tetanus=lockjaw
        bells_palsy=facial_paralysis rabies=hydrophobia parkinsons=resting_tremor
        measles=koplik_spots asthma=wheezing diabetes_mellitus=excessive_thirst
        lupus=butterfly_rash iron_deficiency_anaemia=spoon_nails migraine=throbbing_headache""")
)


# ---------------------------------------------------------------------------------------------
# Templates. In every list of 3+ the LAST entry is held out for the test split (template_ids).
# ``relation`` phrases take {c} (a condition); ``patient`` is the {c} used when the condition is
# only known from the context. Frames take {rel} (a rendered relation phrase) and {x} (a term).
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LanguageTemplates:
    relation: Mapping[str, str]
    patient: str
    mcqa: tuple[str, ...]
    ynm_question: tuple[str, ...]
    ynm_diagnosed: tuple[str, ...]
    ynm_undiagnosed: tuple[str, ...]
    nli_premise: tuple[str, ...]
    nli_hypothesis: tuple[str, ...]
    nli_neutral: tuple[str, ...]
    open_question: tuple[str, ...]


def _lt(rel: str, patient: str, **lists: str) -> LanguageTemplates:
    relation = dict(zip(RELATIONS, [p.strip() for p in rel.split("|")]))
    parsed = {k: tuple(p.strip() for p in v.split("|")) for k, v in lists.items()}
    return LanguageTemplates(relation=relation, patient=patient, **parsed)


TEMPLATES: dict[str, LanguageTemplates] = {
    "en": _lt(
        "the first-line drug for {c}|the causative organism of {c}|the organ mainly affected by {c}|a characteristic sign of {c}",
        "the patient's condition",
        mcqa="What is {rel}?|Which of the following is {rel}?|Choose {rel}.|Identify {rel} from the options below.",
        ynm_question="Is {x} {rel}?|Is it true that {x} is {rel}?|Can {x} be described as {rel}?|Would you say that {x} is {rel}?",
        ynm_diagnosed="A patient has been diagnosed with {c}.|The diagnosis of {c} was confirmed in a patient.",
        ynm_undiagnosed="A patient has come to the clinic; no diagnosis has been made yet.|A patient reports feeling unwell, and the cause has not been determined.",
        nli_premise="The patient was diagnosed with {c}.|The patient has {c}.|Diagnosis on admission: {c}.",
        nli_hypothesis="{x} is {rel}.|In this case, {x} is {rel}.|Thus, {x} is {rel}.|It follows that {x} is {rel}.",
        nli_neutral="The patient also has {c}.|The patient has a family history of {c}.|The patient's mother had {c}.|The patient was treated for {c} in the past.",
        open_question="What is {rel}?|Name {rel}.|Please state {rel}.",
    ),
    "zh": _lt(
        "{c}的一线治疗药物|{c}的病原体|{c}主要累及的器官|{c}的特征性体征",
        "该患者所患疾病",
        mcqa="{rel}是什么？|下列哪一项是{rel}？|请选择{rel}。|请从以下选项中找出{rel}。",
        ynm_question="{x}是{rel}吗？|{x}是否为{rel}？|可以认为{x}是{rel}吗？|你认为{x}是{rel}吗？",
        ynm_diagnosed="一名患者被诊断为{c}。|一名患者的{c}诊断已得到确认。",
        ynm_undiagnosed="一名患者前来就诊，目前尚未作出诊断。|一名患者自述身体不适，病因尚未明确。",
        nli_premise="该患者被诊断为{c}。|该患者患有{c}。|入院诊断：{c}。",
        nli_hypothesis="{x}是{rel}。|在本病例中，{x}是{rel}。|因此，{x}是{rel}。|由此可知，{x}是{rel}。",
        nli_neutral="该患者还患有{c}。|该患者有{c}家族史。|该患者的母亲曾患{c}。|该患者过去曾因{c}接受治疗。",
        open_question="{rel}是什么？|请说出{rel}。|请写出{rel}。",
    ),
    "es": _lt(
        "el fármaco de primera línea para {c}|el microorganismo causante de {c}|el órgano afectado principalmente por {c}|un signo característico de {c}",
        "la enfermedad del paciente",
        mcqa="¿Cuál es {rel}?|¿Cuál de las siguientes opciones es {rel}?|Elija {rel}.|Identifique {rel} entre las opciones siguientes.",
        ynm_question="¿Es {x} {rel}?|¿Es cierto que {x} es {rel}?|¿Se puede considerar que {x} es {rel}?|¿Diría usted que {x} es {rel}?",
        ynm_diagnosed="A un paciente se le ha diagnosticado {c}.|Se confirmó el diagnóstico de {c} en un paciente.",
        ynm_undiagnosed="Un paciente acude a la consulta; todavía no se ha establecido ningún diagnóstico.|Un paciente refiere malestar y aún no se ha determinado la causa.",
        nli_premise="Al paciente se le diagnosticó {c}.|El paciente padece {c}.|Diagnóstico al ingreso: {c}.",
        nli_hypothesis="{x} es {rel}.|En este caso, {x} es {rel}.|Por lo tanto, {x} es {rel}.|Se deduce que {x} es {rel}.",
        nli_neutral="El paciente también padece {c}.|El paciente tiene antecedentes familiares de {c}.|La madre del paciente padeció {c}.|El paciente recibió tratamiento por {c} en el pasado.",
        open_question="¿Cuál es {rel}?|Nombre {rel}.|Indique {rel}.",
    ),
    "fr": _lt(
        "le médicament de première intention contre {c}|le micro-organisme responsable de {c}|l'organe principalement atteint par {c}|un signe caractéristique de {c}",
        "la maladie du patient",
        mcqa="Quel est {rel} ?|Parmi les propositions suivantes, laquelle correspond à {rel} ?|Choisissez {rel}.|Identifiez {rel} parmi les options ci-dessous.",
        ynm_question="Est-ce que {x} est {rel} ?|Est-il vrai que {x} est {rel} ?|Peut-on dire que {x} est {rel} ?|Diriez-vous que {x} est {rel} ?",
        ynm_diagnosed="On a diagnostiqué {c} chez un patient.|Le diagnostic de {c} a été confirmé chez un patient.",
        ynm_undiagnosed="Un patient consulte ; aucun diagnostic n'a encore été posé.|Un patient se sent mal et la cause n'a pas encore été déterminée.",
        nli_premise="Le patient est atteint de {c}.|On a diagnostiqué {c} chez le patient.|Diagnostic à l'admission : {c}.",
        nli_hypothesis="{x} est {rel}.|Dans ce cas, {x} est {rel}.|Ainsi, {x} est {rel}.|Il s'ensuit que {x} est {rel}.",
        nli_neutral="Le patient est également atteint de {c}.|Le patient a des antécédents familiaux de {c}.|La mère du patient a eu {c}.|Le patient a été traité pour {c} par le passé.",
        open_question="Quel est {rel} ?|Nommez {rel}.|Indiquez {rel}.",
    ),
    "ar": _lt(
        "دواء الخط الأول لعلاج {c}|العامل الممرض الذي يسبب {c}|العضو المصاب بشكل رئيسي في {c}|علامة مميزة في {c}",
        "حالة المريض",
        mcqa="ما {rel}؟|أيٌّ مما يلي هو {rel}؟|اختر {rel}.|حدِّد {rel} من بين الخيارات التالية.",
        ynm_question="هل {x} هو {rel}؟|هل صحيح أن {x} هو {rel}؟|هل يمكن اعتبار {x} {rel}؟|هل ترى أن {x} هو {rel}؟",
        ynm_diagnosed="تم تشخيص إصابة مريض ب{c}.|تأكد تشخيص {c} لدى أحد المرضى.",
        ynm_undiagnosed="حضر مريض إلى العيادة ولم يُوضع أي تشخيص بعد.|يشكو مريض من توعك، ولم يُحدَّد السبب بعد.",
        nli_premise="شُخِّص المريض ب{c}.|المريض مصاب ب{c}.|التشخيص عند الدخول: {c}.",
        nli_hypothesis="{x} هو {rel}.|في هذه الحالة، {x} هو {rel}.|وعليه، فإن {x} هو {rel}.|يترتب على ذلك أن {x} هو {rel}.",
        nli_neutral="المريض مصاب أيضًا ب{c}.|لدى المريض تاريخ عائلي للإصابة ب{c}.|أُصيبت والدة المريض ب{c}.|عولج المريض من {c} في الماضي.",
        open_question="ما {rel}؟|اذكر {rel}.|بيِّن {rel}.",
    ),
    "hi": _lt(
        "{c} के लिए पहली पंक्ति की दवा|{c} का कारक जीव|{c} से मुख्य रूप से प्रभावित अंग|{c} का एक विशिष्ट लक्षण",
        "रोगी की बीमारी",
        mcqa="{rel} क्या है?|निम्नलिखित में से कौन {rel} है?|{rel} चुनिए।|नीचे दिए गए विकल्पों में से {rel} पहचानिए।",
        ynm_question="क्या {x} {rel} है?|क्या यह सच है कि {x} {rel} है?|क्या {x} को {rel} माना जा सकता है?|क्या आप कहेंगे कि {x} {rel} है?",
        ynm_diagnosed="एक रोगी में {c} का निदान किया गया है।|एक रोगी में {c} के निदान की पुष्टि हुई।",
        ynm_undiagnosed="एक रोगी क्लिनिक आया है; अभी तक कोई निदान नहीं हुआ है।|एक रोगी अस्वस्थ महसूस कर रहा है, और कारण अभी तक निर्धारित नहीं हुआ है।",
        nli_premise="रोगी में {c} का निदान हुआ।|रोगी को {c} है।|भर्ती के समय निदान: {c}।",
        nli_hypothesis="{x} {rel} है।|इस मामले में, {x} {rel} है।|अतः {x} {rel} है।|इससे यह निष्कर्ष निकलता है कि {x} {rel} है।",
        nli_neutral="रोगी को {c} भी है।|रोगी के परिवार में {c} का इतिहास है।|रोगी की माँ को {c} था।|अतीत में रोगी का {c} के लिए इलाज हुआ था।",
        open_question="{rel} क्या है?|{rel} का नाम बताइए।|{rel} लिखिए।",
    ),
    "ja": _lt(
        "{c}の第一選択薬|{c}の原因微生物|{c}で主に障害される臓器|{c}の特徴的な徴候",
        "この患者の疾患",
        mcqa="{rel}は何か。|次のうち、{rel}はどれか。|{rel}を選べ。|以下の選択肢から{rel}を特定せよ。",
        ynm_question="{x}は{rel}か。|{x}が{rel}であるというのは正しいか。|{x}は{rel}と考えてよいか。|{x}は{rel}だと言えるか。",
        ynm_diagnosed="ある患者が{c}と診断された。|ある患者で{c}の診断が確定した。",
        ynm_undiagnosed="ある患者が外来を受診したが、まだ診断はついていない。|ある患者が体調不良を訴えているが、原因はまだ特定されていない。",
        nli_premise="患者は{c}と診断された。|患者は{c}を患っている。|入院時診断：{c}。",
        nli_hypothesis="{x}は{rel}である。|この症例では、{x}は{rel}である。|よって、{x}は{rel}である。|したがって、{x}は{rel}である。",
        nli_neutral="患者は{c}も患っている。|患者には{c}の家族歴がある。|患者の母親は{c}を患っていた。|患者は過去に{c}の治療を受けた。",
        open_question="{rel}は何か。|{rel}を挙げよ。|{rel}を答えよ。",
    ),
    "ko": _lt(
        "{c}의 1차 치료 약물|{c}의 원인 병원체|{c}에서 주로 침범되는 장기|{c}의 특징적인 징후",
        "이 환자의 질환",
        mcqa="{rel}에 해당하는 것은?|다음 중 {rel}에 해당하는 것은 무엇인가?|다음 중 {rel}로 옳은 것을 고르시오.|아래 보기 중에서 {rel}에 해당하는 항목을 찾으시오.",
        ynm_question="{x}은(는) {rel}인가?|{x}이(가) {rel}에 해당한다는 것은 사실인가?|{x}을(를) {rel}로 볼 수 있는가?|{x}은(는) {rel}에 해당한다고 할 수 있는가?",
        ynm_diagnosed="한 환자에게 {c} 진단이 내려졌다.|한 환자에서 {c} 진단이 확정되었다.",
        ynm_undiagnosed="한 환자가 외래에 내원했으나 아직 진단이 내려지지 않았다.|한 환자가 몸이 좋지 않다고 호소하지만 원인은 아직 밝혀지지 않았다.",
        nli_premise="환자는 {c} 진단을 받았다.|환자는 {c} 환자이다.|입원 시 진단: {c}.",
        nli_hypothesis="{x}은(는) {rel}이다.|이 증례에서 {x}은(는) {rel}이다.|그러므로 {x}은(는) {rel}이다.|따라서 {x}은(는) {rel}이다.",
        nli_neutral="환자는 {c}도 앓고 있다.|환자에게는 {c} 가족력이 있다.|환자의 어머니는 {c}을(를) 앓았다.|환자는 과거에 {c} 치료를 받은 적이 있다.",
        open_question="{rel}은(는) 무엇인가?|{rel}을(를) 쓰시오.|{rel}을(를) 답하시오.",
    ),
    "sw": _lt(
        "dawa ya kwanza ya kutibu {c}|kiumbe kinachosababisha {c}|kiungo kinachoathiriwa zaidi na {c}|dalili bainifu ya {c}",
        "ugonjwa wa mgonjwa huyu",
        mcqa="Taja {rel}.|Ni jibu lipi linaloonyesha {rel}?|Chagua {rel}.|Tambua {rel} kutoka kwenye chaguo zilizo hapa chini.",
        ynm_question="Je, {x} ni {rel}?|Je, ni kweli kwamba {x} ni {rel}?|Je, tunaweza kusema kwamba {x} ni {rel}?|Je, ungesema kwamba {x} ni {rel}?",
        ynm_diagnosed="Mgonjwa amegunduliwa kuwa na {c}.|Utambuzi wa {c} umethibitishwa kwa mgonjwa mmoja.",
        ynm_undiagnosed="Mgonjwa amekuja kliniki; bado hajapatiwa utambuzi wowote.|Mgonjwa analalamika kujisikia vibaya, na chanzo bado hakijajulikana.",
        nli_premise="Mgonjwa aligunduliwa kuwa na {c}.|Mgonjwa ana {c}.|Utambuzi wakati wa kulazwa: {c}.",
        nli_hypothesis="{x} ni {rel}.|Katika kesi hii, {x} ni {rel}.|Kwa hiyo, {x} ni {rel}.|Hivyo basi, {x} ni {rel}.",
        nli_neutral="Mgonjwa pia ana {c}.|Katika familia ya mgonjwa kuna historia ya {c}.|Mama wa mgonjwa alikuwa na {c}.|Mgonjwa aliwahi kutibiwa {c} hapo awali.",
        open_question="{rel} ni nini?|Taja {rel}.|Andika {rel}.",
    ),
    "yo": _lt(
        "oògùn àkọ́kọ́ fún ìtọ́jú {c}|kòkòrò àrùn tó ń fa {c}|ẹ̀yà ara tí {c} ń kàn jù lọ|àmì pàtàkì {c}",
        "àìsàn aláìsàn yìí",
        mcqa="Kí ni {rel}?|Èwo nínú àwọn wọ̀nyí ni {rel}?|Yan {rel}.|Dá {rel} mọ̀ láàrin àwọn àṣàyàn tó wà nísàlẹ̀.",
        ynm_question="Ṣé {x} ni {rel}?|Ṣé òótọ́ ni pé {x} ni {rel}?|Ṣé a lè sọ pé {x} ni {rel}?|Ṣé ìwọ yóò sọ pé {x} ni {rel}?",
        ynm_diagnosed="Wọ́n ti ṣàwárí pé aláìsàn kan ní {c}.|Wọ́n ti fìdí rẹ̀ múlẹ̀ pé aláìsàn kan ní {c}.",
        ynm_undiagnosed="Aláìsàn kan wá sí ilé ìwòsàn; wọn kò tíì mọ àìsàn tó ń ṣe é.|Aláìsàn kan ń ṣàròyé pé ara òun kò yá, ṣùgbọ́n a kò tíì mọ ohun tó fà á.",
        nli_premise="Wọ́n ṣàwárí pé aláìsàn náà ní {c}.|Aláìsàn náà ní {c}.|Àyẹ̀wò nígbà ìgbàwọlé: {c}.",
        nli_hypothesis="{x} ni {rel}.|Nínú ọ̀ràn yìí, {x} ni {rel}.|Nítorí èyí, {x} ni {rel}.|Nítorí náà, {x} ni {rel}.",
        nli_neutral="Aláìsàn náà tún ní {c}.|Ìtàn {c} wà nínú ìdílé aláìsàn náà.|Ìyá aláìsàn náà ní {c} rí.|Wọ́n ti tọ́jú aláìsàn náà fún {c} rí.",
        open_question="Kí ni {rel}?|Dárúkọ {rel}.|Sọ {rel}.",
    ),
    "zu": _lt(
        "umuthi wokuqala owelapha {c}|igciwane elibangela {c}|isitho esithinteka kakhulu ku-{c}|uphawu oluvelele lwe-{c}",
        "isifo sesiguli",
        mcqa="Yini {rel}?|Khetha {rel}.|Phakathi kwalezi zinketho, khetha {rel}.|Bona {rel} ezinkethweni ezingezansi.",
        ynm_question="Ingabe {x} yi-{rel}?|Kuyiqiniso yini ukuthi {x} yi-{rel}?|Singathi {x} yi-{rel}?|Ungathi {x} yi-{rel}?",
        ynm_diagnosed="Isiguli sitholakale sine-{c}.|Kuqinisekisiwe ukuthi isiguli sine-{c}.",
        ynm_undiagnosed="Isiguli sifike emtholampilo; asikatholakali ukuthi sinani.|Isiguli sithi asizizwa kahle, kodwa imbangela ayikaziwa.",
        nli_premise="Isiguli sine-{c}.|Kutholakale ukuthi isiguli sine-{c}.|Ukuxilongwa lapho singeniswa: {c}.",
        nli_hypothesis="{x} yi-{rel}.|Kulesi simo, {x} yi-{rel}.|Ngalokho, {x} yi-{rel}.|Ngakho-ke, {x} yi-{rel}.",
        nli_neutral="Isiguli siphinde sibe ne-{c}.|Emndenini wesiguli kunomlando we-{c}.|Umama wesiguli wake waba ne-{c}.|Isiguli sake selashelwa i-{c} esikhathini esedlule.",
        open_question="Yini {rel}?|Sho {rel}.|Bhala {rel}.",
    ),
    "am": _lt(
        "ለ{c} የመጀመሪያ ደረጃ መድኃኒት|{c}ን የሚያመጣው ተሕዋስ|በ{c} በዋናነት የሚጎዳው የሰውነት ክፍል|የ{c} መለያ ምልክት",
        "የታካሚው በሽታ",
        mcqa="{rel} ምንድን ነው?|ከሚከተሉት ውስጥ {rel} የትኛው ነው?|{rel}ን ይምረጡ።|ከታች ካሉት አማራጮች ውስጥ {rel}ን ለይተው ያውጡ።",
        ynm_question="{x} {rel} ነው?|{x} {rel} መሆኑ እውነት ነው?|{x} {rel} ተደርጎ ሊወሰድ ይችላል?|{x} {rel} ነው ማለት ይቻላል?",
        ynm_diagnosed="አንድ ታካሚ {c} እንዳለበት ታውቋል።|በአንድ ታካሚ ላይ የ{c} ምርመራ ተረጋግጧል።",
        ynm_undiagnosed="አንድ ታካሚ ወደ ክሊኒክ መጥቷል፤ እስካሁን ምንም ምርመራ አልተደረገም።|አንድ ታካሚ ሕመም እንደሚሰማው ይናገራል፤ ምክንያቱ ግን እስካሁን አልታወቀም።",
        nli_premise="ታካሚው {c} እንዳለበት ታውቋል።|ታካሚው {c} አለበት።|በመግቢያ ጊዜ የተሰጠ ምርመራ፦ {c}።",
        nli_hypothesis="{x} {rel} ነው።|በዚህ ሁኔታ {x} {rel} ነው።|በመሆኑም {x} {rel} ነው።|ስለዚህ {x} {rel} ነው።",
        nli_neutral="ታካሚው {c}ም አለበት።|በታካሚው ቤተሰብ ውስጥ የ{c} ታሪክ አለ።|የታካሚው እናት {c} ነበረባት።|ታካሚው ቀደም ሲል ለ{c} ሕክምና ተደርጎለታል።",
        open_question="{rel} ምንድን ነው?|{rel}ን ይጥቀሱ።|{rel}ን ይግለጹ።",
    ),
}

# Slot values are wrapped in these marks while rendering so that joins between a template and a
# value can be fixed up where they happen (and only there); ``_finish`` removes them.
_OPEN, _CLOSE = "\x01", "\x02"


def _fill(template: str, **values: str) -> str:
    return template.format(**{k: f"{_OPEN}{v}{_CLOSE}" for k, v in values.items()})


def _zulu_join(m: re.Match) -> str:
    """Zulu prefix + noun at a slot boundary (best effort): a loanword's own ``i-`` class prefix
    is dropped after another prefix; with a native noun the vowels coalesce (a/e+i -> e,
    a/e+u -> o, a/e+a -> a, e.g. sine- + utwayi -> sinotwayi); the copula yi- becomes ngu-/nga-
    before u-/a- nouns; the object prefix i- is the noun's own."""
    prefix, head = m.group(1), m.group(2)
    if head == "i-":
        return f"{prefix}-{_OPEN}"
    if prefix == "yi":
        return {"i": f"y{_OPEN}i", "u": f"ngu{_OPEN}", "a": f"nga{_OPEN}"}[head]
    if prefix == "i":
        return _OPEN + head
    if prefix == "ku":
        return "ku" + _OPEN
    if prefix[-1] in "ae":
        return prefix[:-1] + {"i": "e", "u": "o", "a": "a"}[head] + _OPEN
    return m.group(0)


# Grammar fix-ups after slot filling (contractions and joins the slot values create).
_POSTPROCESS: dict[str, tuple[tuple[str, object], ...]] = {
    "fr": ((r"\bde le\b", "du"), (r"\bde les\b", "des"), (r"\bà le\b", "au"), (r"\bà les\b", "aux"),
           (r"\b([dD])e ([aeiouyhâàéèêëîïôûœ])", r"\1'\2"), (r"\b([qQ])ue ([aeiouyâàéèêëîïôûœ])", r"\1u'\2")),
    "es": ((r"\bde el\b", "del"), (r"\ba el\b", "al")),
    # Amharic prefixes (ለ/በ/የ) replace a genitive የ at the start of the filled phrase.
    "am": ((f"([ለበየ]){_OPEN}+የ", lambda m: m.group(0)[:-1]),),
    "zu": ((f"(\\w+)-{_OPEN}(i-|[iua])", _zulu_join),),
}


def _finish(text: str, language: str) -> str:
    for pattern, repl in _POSTPROCESS.get(language, ()):
        if language in ("am", "zu"):  # these rules look at the slot marks
            text = re.sub(pattern, repl, text)
    text = text.replace(_OPEN, "").replace(_CLOSE, "")
    for pattern, repl in _POSTPROCESS.get(language, ()):
        if language not in ("am", "zu"):
            text = re.sub(pattern, repl, text)
    return text[:1].upper() + text[1:]


def template_ids(n: int, split: str) -> tuple[int, ...]:
    """Indices of an ``n``-long template list usable in ``split``: the last one is test-only when
    that leaves at least two training phrasings; shorter lists serve both splits."""
    if n < 3:
        return tuple(range(n))
    return (n - 1,) if split == "test" else tuple(range(n - 1))


# ---------------------------------------------------------------------------------------------
# Generation.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MiniConfig:
    """Sizes per (language, family): train = len(FACTS) * train_variants for high-resource
    languages and ``round(low_resource_fraction *`` that ``)`` for low-resource ones; test =
    len(FACTS) * test_variants for every language (balanced, for fair evaluation); validation =
    len(FACTS) * dev_variants for every language (every family, open_qa included). open_qa has
    ``items_per_fact`` instead of the variants in train and test (2 train, 1 test)."""

    seed: int = 0
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    families: tuple[str, ...] = FAMILIES
    train_variants: int = 6
    test_variants: int = 2
    dev_variants: int = 1
    low_resource_fraction: float = 0.15
    low_resource: tuple[str, ...] | None = None  # None: the registry's low-resource ones
    num_options: int = 4

    def low_resource_languages(self) -> tuple[str, ...]:
        if self.low_resource is not None:
            return tuple(self.low_resource)
        return tuple(c for c in self.languages if get_language(c).low_resource)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """The language-independent content of one source item."""

    fact: Fact
    variant: int
    label: str
    templates: Mapping[str, int]
    options: tuple[str, ...] = ()  # term ids in option order (mcqa)
    candidate: str | None = None  # term id asked about (yes_no_maybe, nli)
    other_condition: str | None = None  # condition id (nli neutral)


def _rel_terms(relation: str) -> list[str]:
    return sorted(TERMS[relation])


@dataclasses.dataclass(frozen=True)
class _ItemContext:
    """What every family's item builder draws on for one (fact, variant, split)."""

    fact: Fact
    k: int
    split: str
    cfg: MiniConfig
    rng: random.Random
    cycle: int  # labels cycle over (fact, variant) so every label / letter is (near-)equally frequent
    others: list[str]  # the relation's terms other than the fact's answer
    lt: LanguageTemplates  # template counts are equal in all languages (checked at import)

    def pick(self, n: int) -> int:
        return self.rng.choice(template_ids(n, self.split))


def _mcqa_spec(c: _ItemContext) -> _Spec:
    n = c.cfg.num_options
    distractors = c.rng.sample(c.others, n - 1)
    answer_pos = c.cycle % n
    options = distractors[:answer_pos] + [c.fact.answer] + distractors[answer_pos:]
    return _Spec(c.fact, c.k, OPTION_LETTERS[answer_pos], {"mcqa": c.pick(len(c.lt.mcqa))}, options=tuple(options))


def _yes_no_maybe_spec(c: _ItemContext) -> _Spec:
    label = YES_NO_MAYBE[c.cycle % 3]
    if label == "yes":
        candidate, context = c.fact.answer, "ynm_diagnosed"
    elif label == "no":
        candidate, context = c.rng.choice(c.others), "ynm_diagnosed"
    else:  # no diagnosis in the note: the answer cannot be known
        candidate, context = c.rng.choice([c.fact.answer] + c.others), "ynm_undiagnosed"
    templates = {"ynm_question": c.pick(len(c.lt.ynm_question)), context: c.pick(len(getattr(c.lt, context)))}
    return _Spec(c.fact, c.k, label, templates, candidate=candidate)


def _nli_spec(c: _ItemContext) -> _Spec:
    label = NLI_LABELS[c.cycle % 3]
    templates = {"nli_premise": c.pick(len(c.lt.nli_premise))}
    if label == "neutral":
        other = c.rng.choice(sorted({f.condition for f in FACTS} - {c.fact.condition}))
        templates["nli_neutral"] = c.pick(len(c.lt.nli_neutral))
        return _Spec(c.fact, c.k, label, templates, other_condition=other)
    candidate = c.fact.answer if label == "entailment" else c.rng.choice(c.others)
    templates["nli_hypothesis"] = c.pick(len(c.lt.nli_hypothesis))
    return _Spec(c.fact, c.k, label, templates, candidate=candidate)


def _open_qa_spec(c: _ItemContext) -> _Spec:  # item k asks with the k-th phrasing of the split
    ids = template_ids(len(c.lt.open_question), c.split)  # (validation may ask for more items than phrasings)
    return _Spec(c.fact, c.k, c.fact.answer, {"open_question": ids[c.k % len(ids)]})


@dataclasses.dataclass(frozen=True)
class _Rendering:
    """The language-specific text of one item (what ``_render`` needs from a family)."""

    question: str
    answer: str
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    context: str | None = None


@dataclasses.dataclass(frozen=True)
class _Words:
    """One item's words in one language, shared by the families' renderers."""

    spec: _Spec
    language: str
    lt: LanguageTemplates
    condition: str
    rel_c: str
    rel_patient: str

    def term(self, term_id: str) -> str:
        return TERMS[self.spec.fact.relation][term_id][self.language]

    def fin(self, text: str) -> str:
        return _finish(text, self.language)


def _mcqa_text(w: _Words) -> _Rendering:
    t = w.spec.templates
    return _Rendering(question=w.fin(_fill(w.lt.mcqa[t["mcqa"]], rel=w.rel_c)), answer=w.spec.label,
                      options={OPTION_LETTERS[i]: w.term(o) for i, o in enumerate(w.spec.options)})


def _open_qa_text(w: _Words) -> _Rendering:
    t = w.spec.templates
    return _Rendering(question=w.fin(_fill(w.lt.open_question[t["open_question"]], rel=w.rel_c)),
                      answer=w.term(w.spec.fact.answer))


def _yes_no_maybe_text(w: _Words) -> _Rendering:
    t = w.spec.templates
    question = w.fin(_fill(w.lt.ynm_question[t["ynm_question"]], x=w.term(w.spec.candidate), rel=w.rel_patient))
    if "ynm_diagnosed" in t:
        context = w.fin(_fill(w.lt.ynm_diagnosed[t["ynm_diagnosed"]], c=w.condition))
    else:
        context = w.fin(w.lt.ynm_undiagnosed[t["ynm_undiagnosed"]])
    return _Rendering(question=question, answer=w.spec.label, context=context)


def _nli_text(w: _Words) -> _Rendering:
    t = w.spec.templates
    context = w.fin(_fill(w.lt.nli_premise[t["nli_premise"]], c=w.condition))
    if "nli_neutral" in t:
        other = CONDITIONS[w.spec.other_condition][w.language]
        question = w.fin(_fill(w.lt.nli_neutral[t["nli_neutral"]], c=other))
    else:
        question = w.fin(_fill(w.lt.nli_hypothesis[t["nli_hypothesis"]], x=w.term(w.spec.candidate), rel=w.rel_patient))
    return _Rendering(question=question, answer=w.spec.label, context=context)


@dataclasses.dataclass(frozen=True)
class _FamilyItems:
    """How GlobMed-mini builds one family's items: the language-independent content, its text in
    one language, and whether an item per question phrasing replaces the configured variants
    (open questions: nothing else varies)."""

    spec: Callable[[_ItemContext], _Spec]
    text: Callable[[_Words], _Rendering]
    one_item_per_phrasing: bool = False


_FAMILY_ITEMS = {
    MCQA.name: _FamilyItems(_mcqa_spec, _mcqa_text),
    YES_NO_MAYBE_FAMILY.name: _FamilyItems(_yes_no_maybe_spec, _yes_no_maybe_text),
    NLI.name: _FamilyItems(_nli_spec, _nli_text),
    OPEN_QA.name: _FamilyItems(_open_qa_spec, _open_qa_text, one_item_per_phrasing=True),
}


def _family_items(family: str) -> _FamilyItems:
    get_family(family)  # a clear error for an unknown name
    return _FAMILY_ITEMS[family]


def _spec(family: str, fact: Fact, fact_index: int, k: int, split: str, cfg: MiniConfig) -> _Spec:
    rng = random.Random(f"{cfg.seed}|{family}|{split}|{fact.id}|{k}")
    # A distinct label / letter cycle per split, so validation items differ from train and test ones.
    offset = {"train": 0, "test": cfg.train_variants, "validation": cfg.train_variants + cfg.test_variants}[split]
    cycle = fact_index + offset + k
    others = [t for t in _rel_terms(fact.relation) if t != fact.answer]
    context = _ItemContext(fact, k, split, cfg, rng, cycle, others, TEMPLATES["en"])
    return _family_items(family).spec(context)


def _render(family: str, spec: _Spec, language: str, split: str, source_id: str) -> Record:
    lt = TEMPLATES[language]
    fact = spec.fact
    condition = CONDITIONS[fact.condition][language]
    rel_c = _fill(lt.relation[fact.relation], c=condition)
    words = _Words(spec, language, lt, condition, rel_c, _fill(lt.relation[fact.relation], c=lt.patient))
    text = _family_items(family).text(words)
    explanation = words.fin(_fill(lt.nli_hypothesis[0], x=words.term(fact.answer), rel=rel_c))
    return Record(
        id=records_io.record_id(source_id, language),
        source_id=source_id,
        dataset=dataset_name(family),
        language=language,
        split=split,
        family=family,
        question=text.question,
        answer=text.answer,
        options=text.options,
        context=text.context,
        explanation=explanation,
        meta={
            "synthetic": True,
            "fact": fact.id,
            "relation": fact.relation,
            "variant": spec.variant,
            "templates": ",".join(f"{k}:{v}" for k, v in sorted(spec.templates.items())),
            "candidate": spec.candidate,
        },
    )


def items_per_fact(family: str, split: str, cfg: MiniConfig) -> int:
    """Source items per fact: the configured variants, except for a family with one item per
    phrasing of the split (open_qa); validation: ``dev_variants`` for every family."""
    if split == "validation":
        return cfg.dev_variants
    if _family_items(family).one_item_per_phrasing:
        return len(template_ids(len(TEMPLATES["en"].open_question), split))
    return cfg.train_variants if split == "train" else cfg.test_variants


def _source_items(family: str, split: str, cfg: MiniConfig) -> list[tuple[str, _Spec]]:
    variants = items_per_fact(family, split, cfg)
    out = []
    for fi, fact in enumerate(FACTS):
        for k in range(variants):
            source_id = f"{dataset_name(family)}/{split}/{fact.id}/{k}"
            out.append((source_id, _spec(family, fact, fi, k, split, cfg)))
    return out


def low_resource_subset(family: str, cfg: MiniConfig) -> frozenset[str]:
    """The train source ids kept for low-resource languages (the same subset in all of them)."""
    ids = [sid for sid, _ in _source_items(family, "train", cfg)]
    n = max(1, round(cfg.low_resource_fraction * len(ids))) if ids else 0
    return frozenset(random.Random(f"{cfg.seed}|low_resource|{family}").sample(ids, n))


@functools.lru_cache(maxsize=8)
def _generate(cfg: MiniConfig, split: str) -> tuple[Record, ...]:
    if split not in MINI_SPLITS:
        raise ValueError(f"GlobMed-mini has splits {MINI_SPLITS}, not {split!r}")
    for lang in cfg.languages:
        if lang not in TEMPLATES:
            raise ValueError(f"GlobMed-mini has no templates for language {lang!r}; have {sorted(TEMPLATES)}")
    low = set(cfg.low_resource_languages())
    records = []
    for family in cfg.families:
        items = _source_items(family, split, cfg)
        keep_low = low_resource_subset(family, cfg) if split == "train" else None
        for lang in cfg.languages:
            for source_id, spec in items:
                if keep_low is not None and lang in low and source_id not in keep_low:
                    continue
                records.append(_render(family, spec, lang, split, source_id))
    return tuple(records)


def generate(config: MiniConfig = MiniConfig(), split: str = "train") -> list[Record]:
    """All GlobMed-mini records of ``split`` (``MINI_SPLITS``), ordered by family, language, item.

    Deterministic for a config (cached: repeated calls are cheap and return equal lists)."""
    return list(_generate(config, split))


def generate_all(config: MiniConfig = MiniConfig()) -> dict[str, list[Record]]:
    return {split: generate(config, split) for split in MINI_SPLITS}


@dataclasses.dataclass(frozen=True)
class MiniSource:
    """A task source, ``split -> records`` of one (dataset, language); equal for equal arguments,
    so tasks built twice from one config are equal (and share their record caches)."""

    family: str
    language: str
    config: MiniConfig = MiniConfig()

    def __call__(self, split: str) -> list[Record]:
        dataset = dataset_name(self.family)
        return [r for r in _generate(self.config, split) if r.dataset == dataset and r.language == self.language]


def source(family: str, language: str, config: MiniConfig = MiniConfig()) -> MiniSource:
    return MiniSource(family, language, config)


def write_jsonl(out_dir: str | pathlib.Path, config: MiniConfig = MiniConfig()) -> dict[tuple[str, str, str], pathlib.Path]:
    """Writes ``<out>/<dataset>/<language>/<split>.jsonl`` (the importers' layout); returns the paths."""
    paths = records_io.write_records((r for split in MINI_SPLITS for r in _generate(config, split)), out_dir)
    return dict(sorted(paths.items()))


def counts(records: Iterable[Record]) -> dict[tuple[str, str, str], int]:
    """``{(language, task, split): n}``."""
    return dict(collections.Counter((r.language, r.family, r.split) for r in records))


def _check_tables() -> None:
    for relation, table in TERMS.items():
        for term_id, row in table.items():
            missing = set(_COLS) - set(row)
            if missing:
                raise AssertionError(f"{relation} term {term_id} lacks {sorted(missing)}")
    for fact in FACTS:
        if fact.condition not in CONDITIONS or fact.answer not in TERMS[fact.relation]:
            raise AssertionError(f"fact {fact.id} refers to an unknown term")
    lists = [f.name for f in dataclasses.fields(LanguageTemplates) if f.name not in ("relation", "patient")]
    shape = {name: len(getattr(TEMPLATES["en"], name)) for name in lists}
    for lang, lt in TEMPLATES.items():
        got = {name: len(getattr(lt, name)) for name in lists}
        if got != shape or set(lt.relation) != set(RELATIONS):
            raise AssertionError(f"templates of {lang!r} differ in shape from English: {got} != {shape}")


_check_tables()
