"""Speech: a script becomes audio with phoneme timings (Speech), from text by a speech engine or from audio.

    base         Voice and SpeechEngine: what each speech engine registers
    registry     the speech engines, in order of preference (one entry per engine)
    catalogue    every registered voice; the local voice that serves a request's script.provider
    synthesizer  text → Speech with the chosen voice's engine
    kokoro       Kokoro-82M's 54 neural voices in 9 languages (kokoro_files: its files and their sha256;
                 kokoro_phonemes: espeak-ng IPA as Kokoro reads it; kokoro_cjk: Japanese and Mandarin)
    piper_joe    the neural English voice joe (piper-tts)
    espeak_ng    espeak-ng's voices, many languages (espeak_lib: its ctypes binding)
    onnx_session the neural engines' onnxruntime CPU session (threads, arena, memory handed back)
    timing       Speech and Phone, and the helpers engines build timings with
    text         SSML reduced to text; text cut into pieces an engine can speak
    audio        audio files (PyAV): decode an audio script, resample, write a talk's WAV

Listing voices is cheap (the API process does it for GET /tts/voices and to validate a talk): engine modules
import their heavy libraries (piper, onnxruntime, OpenJTalk, jieba, PyAV) only when they speak.
"""
