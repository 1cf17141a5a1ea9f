"""What is known of the cloud voices a request may name: each Amazon Polly voice's locale, and the gender
of the common Microsoft, Polly, Google, ElevenLabs and OpenAI voices (an engine without credentials for
them serves a local voice of the same language and, where it has one, the same gender).

Sources, as the providers list them: Azure AI Speech's voice gallery (language support, "Text to speech"),
Amazon Polly's "Available voices", Google Cloud Text-to-Speech's "Supported voices and languages" (the
letter of a voice names its gender per locale, the same across Standard, Wavenet, Neural2, News and
Studio), and ElevenLabs' premade voices (GET /v1/voices: `labels.gender`).
"""

from __future__ import annotations

import re
import unicodedata

FEMALE, MALE = "female", "male"

# Amazon Polly voice names by locale: (female, male), the ones D-ID lists and Polly's other common ones.
_POLLY = {
    "en-US": ("joanna ivy kendra kimberly salli ruth danielle",
              "matthew justin joey kevin stephen gregory patrick"),
    "en-GB": ("amy emma", "brian arthur geraint"), "en-AU": ("nicole olivia", "russell"),
    "en-IN": ("raveena aditi kajal", ""), "en-NZ": ("aria", ""), "en-ZA": ("ayanda", ""),
    "en-IE": ("niamh", ""), "de-DE": ("marlene vicki", "hans daniel"), "de-AT": ("hannah", ""),
    "de-CH": ("sabrina", ""), "fr-FR": ("celine lea", "mathieu remi"), "fr-CA": ("chantal gabrielle", "liam"),
    "es-ES": ("conchita lucia", "enrique sergio"), "es-MX": ("mia", "andres"),
    "es-US": ("penelope lupe", "miguel pedro"), "it-IT": ("carla bianca", "giorgio adriano"),
    "pt-BR": ("camila vitoria", "ricardo thiago"), "pt-PT": ("ines", "cristiano"),
    "ja-JP": ("mizuki kazuha tomoko", "takumi"), "zh-CN": ("zhiyu", ""), "zh-HK": ("hiujin", ""),
    "ko-KR": ("seoyeon", ""), "nl-NL": ("lotte laura", "ruben"), "nl-BE": ("lisa", ""),
    "da-DK": ("naja sofie", "mads"), "sv-SE": ("astrid elin", ""), "nb-NO": ("liv ida", ""),
    "fi-FI": ("suvi", ""), "pl-PL": ("ewa maja ola", "jacek jan"), "ru-RU": ("tatyana", "maxim"),
    "tr-TR": ("filiz burcu", ""), "ro-RO": ("carmen", ""), "is-IS": ("dora", "karl"),
    "cy-GB": ("gwyneth", ""), "ar": ("zeina", ""), "ar-AE": ("hala", "zayd"), "ca-ES": ("arlet", ""),
    "cs-CZ": ("jitka", ""),
}  # fmt: skip
POLLY_VOICES: dict[str, tuple[str, str]] = {
    name: (locale, gender)
    for locale, names in _POLLY.items()
    for gender, group in zip((FEMALE, MALE), names)
    for name in group.split()
}

# Microsoft (Azure) neural voice names without locale and suffix ("en-US-JennyNeural": "jenny"), by
# language (the keys only label the groups), (female, male); Mandarin names follow a rule (_MICROSOFT_RULES).
_MICROSOFT = {
    "en-US": (("jenny aria sara ava emma michelle nancy jane amber ana ashley cora elizabeth monica evelyn "
               "lola nova phoebe serena coral luna"),
              ("guy davis tony jason andrew brian christopher eric roger steffan brandon jacob kai derek "
               "dustin adam alloy lewis samuel")),
    "en-GB en-AU en-CA en-IE en-IN en-NZ en-ZA": (
        ("sonia libby maisie mia abbi bella hollie olivia ada natasha annette carly elsie freya joanne kim "
         "tina clara emily neerja aashi ananya kavya molly leah"),
        ("ryan thomas alfie elliot ethan noah oliver oscar ollie william darren duncan ken neil tim liam "
         "connor prabhat aarav kunal rehaan mitchell luke")),
    "es": (("elvira abril estrella irene laia lia triana vera ximena dalia beatriz candela carlota larissa "
            "marina nuria renata paloma salome elena camila catalina karla maria margarita andrea sofia"),
           ("alvaro arnau dario elias nil saul teo tristan jorge cecilio gerardo liberto luciano pelayo yago "
            "alonso tomas gonzalo lorenzo alex emilio mateo andres")),
    "fr": (("denise brigitte celeste coralie eloise jacqueline josephine yvette vivienne sylvie charline "
            "ariane"),
           "henri alain claude jerome maurice yves remy antoine jean thierry gerard fabrice lucien"),
    "it": ("elsa isabella fiamma fabiola imelda irma palmira pierina",
           "diego benigno calimero cataldo gianni giuseppe lisandro rinaldo alessio marcello"),
    "pt": ("francisca brenda elza giovanna leila leticia manuela yara thalita raquel fernanda",
           "antonio donato fabio humberto julio nicolau valerio duarte macerio"),
    "ja hi": ("nanami aoi mayu shiori swara", "keita daichi naoki masaru madhur"),
}  # fmt: skip
MICROSOFT_GENDERS: dict[str, str] = {
    name: gender
    for names in _MICROSOFT.values()
    for gender, group in zip((FEMALE, MALE), names)
    for name in group.split()
}
_MICROSOFT_RULES = ((re.compile(r"^xiao"), FEMALE), (re.compile(r"^yun"), MALE))  # zh-*: Xiaoxiao, Yunxi

# Google: the letter after the voice type ("en-US-Neural2-F" → F), per locale; other locales' letters are
# too irregular to guess, and serve the language's default voice.
GOOGLE_LETTER_GENDERS: dict[str, dict[str, str]] = {
    "en-US": {**dict.fromkeys("CEFGHKLO", FEMALE), **dict.fromkeys("ABDIJMNQ", MALE)},
    "en-GB": {**dict.fromkeys("ACFGHI", FEMALE), **dict.fromkeys("BDJKLM", MALE)},
    "en-AU": {**dict.fromkeys("AC", FEMALE), **dict.fromkeys("BD", MALE)},
    "en-IN": {**dict.fromkeys("AD", FEMALE), **dict.fromkeys("BC", MALE)},
    "es-ES": {**dict.fromkeys("ACDE", FEMALE), **dict.fromkeys("BF", MALE)},
    "es-US": {**dict.fromkeys("A", FEMALE), **dict.fromkeys("BC", MALE)},
    "fr-FR": {**dict.fromkeys("ACE", FEMALE), **dict.fromkeys("BD", MALE)},
    "fr-CA": {**dict.fromkeys("AC", FEMALE), **dict.fromkeys("BD", MALE)},
    "it-IT": {**dict.fromkeys("AB", FEMALE), **dict.fromkeys("CD", MALE)},
    "pt-BR": {**dict.fromkeys("AC", FEMALE), **dict.fromkeys("B", MALE)},
    "pt-PT": {**dict.fromkeys("AD", FEMALE), **dict.fromkeys("BC", MALE)},
    "hi-IN": {**dict.fromkeys("AD", FEMALE), **dict.fromkeys("BC", MALE)},
    "ja-JP": {**dict.fromkeys("AB", FEMALE), **dict.fromkeys("CD", MALE)},
    "cmn-CN": {**dict.fromkeys("AD", FEMALE), **dict.fromkeys("BC", MALE)},
    "cmn-TW": {**dict.fromkeys("A", FEMALE), **dict.fromkeys("BC", MALE)},
}  # fmt: skip
_GOOGLE_LETTER = re.compile(r"-(?:Standard|Wavenet|Neural2|News|Studio)-([A-Z])$", re.IGNORECASE)

# ElevenLabs premade voices: voice id and name → gender (D-ID's default, Rachel, is 21m00Tcm4TlvDq8ikWAM).
ELEVENLABS_VOICES: dict[str, tuple[str, str]] = {
    "21m00Tcm4TlvDq8ikWAM": ("rachel", FEMALE), "AZnzlk1XvdvUeBnXmlld": ("domi", FEMALE),
    "EXAVITQu4vr4xnSDxMaL": ("sarah", FEMALE), "MF3mGyEYCl7XYWbV9V6O": ("elli", FEMALE),
    "XB0fDUnXU5powFXDhCwa": ("charlotte", FEMALE), "XrExE9yKIg1WjnnlVkGX": ("matilda", FEMALE),
    "pFZP5JQG7iQjIQuC4Bku": ("lily", FEMALE), "Xb7hH8MSUJpSbSDYk0k2": ("alice", FEMALE),
    "cgSgspJ2msm6clMCkdW9": ("jessica", FEMALE), "FGY2WhTYpPnrIDTdsKH5": ("laura", FEMALE),
    "9BWtsMINqrJLrRacOk9x": ("aria", FEMALE),
    "pNInz6obpgDQGcFmaJgB": ("adam", MALE), "ErXwobaYiN019PkySvjV": ("antoni", MALE),
    "TxGEqnHWrfWFTfGW9XjX": ("josh", MALE), "VR6AewLTigWG4xSOukaG": ("arnold", MALE),
    "yoZ06aMxZJJ28mfd3POQ": ("sam", MALE), "onwK4e9ZLuTAKqWW03F9": ("daniel", MALE),
    "JBFqnCBsd6RMkjVDRZzb": ("george", MALE), "IKne3meq5aSn9XLyUdCD": ("charlie", MALE),
    "TX3LPaxmHKxFdv7VOQHJ": ("liam", MALE), "nPczCjzI2devNBz1zQrb": ("brian", MALE),
    "N2lVS1w4EtoT3dr4eOWO": ("callum", MALE), "iP95p4xoKVk53GoZ742B": ("chris", MALE),
    "cjVigY5qzO86Huf0OWal": ("eric", MALE), "CwhRBWXzGAHq8TQ4Fs17": ("roger", MALE),
    "bIHbv24MWmeRgasZH58o": ("will", MALE), "29vD33N1CtxCmqQRPOHJ": ("drew", MALE),
    "2EiwWnXFnvU5JabPnv8n": ("clyde", MALE), "5Q0t7uMcjvnagumLfvZi": ("paul", MALE),
    "CYw3kZ02Hs0563khs1Fj": ("dave", MALE), "D38z5RcWu1voky8WS1ja": ("fin", MALE),
}  # fmt: skip
_ELEVENLABS_BY_NAME = {name: gender for name, gender in ELEVENLABS_VOICES.values()} | {"bella": FEMALE}
# OpenAI's voices, as azure-openai names them without a locale ("alloy" is neither).
OPENAI_GENDERS = {**dict.fromkeys(["nova", "shimmer", "coral", "sage"], FEMALE),
                  **dict.fromkeys(["echo", "fable", "onyx", "ash"], MALE)}  # fmt: skip


def gender_of(provider: str, voice_id: str, locale: str | None) -> str | None:
    """ "female" | "male" for a cloud voice this module knows; None for others (and talkmill's own ids)."""
    if provider == "amazon":
        voice = POLLY_VOICES.get(ascii_lower(voice_id))
        return voice[1] if voice else None
    if provider == "elevenlabs":
        voice = ELEVENLABS_VOICES.get(voice_id)
        return voice[1] if voice else _ELEVENLABS_BY_NAME.get(ascii_lower(voice_id))
    if provider == "google" and locale:
        letter = _GOOGLE_LETTER.search(voice_id)
        return GOOGLE_LETTER_GENDERS.get(locale, {}).get(letter.group(1).upper()) if letter else None
    if provider in ("microsoft", "azure-openai") and locale:
        return _microsoft_gender(voice_id[len(locale) + 1 :])
    if provider == "azure-openai":
        return OPENAI_GENDERS.get(ascii_lower(voice_id))
    return None


def _microsoft_gender(name: str) -> str | None:
    """ "JennyNeural" → female; "AvaMultilingualNeural", "Ava:DragonHDLatestNeural" → Ava's."""
    word = re.match(r"[A-Za-z][a-z]*", name)
    key = word.group().lower() if word else ""
    if key in MICROSOFT_GENDERS:
        return MICROSOFT_GENDERS[key]
    return next((gender for pattern, gender in _MICROSOFT_RULES if pattern.match(key)), None)


def ascii_lower(name: str) -> str:
    """ "Léa" → "lea": voice names are matched without case or accents."""
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
