#!/usr/bin/env python3
"""Write a tiny, randomly initialised self-supervised speech model as a Hugging Face checkpoint folder.

The folder has what a downloaded checkpoint has (``config.json``, ``model.safetensors``,
``preprocessor_config.json``), so the SSL encoder loads it through the same code path as a
real checkpoint (``--ssl_source=<folder>``). Its weights are random: it checks that the
recipes run (demo, tests), it measures nothing. About 45k parameters, written in a second.

Usage: python local/make_tiny_ssl.py results/tiny_wavlm [--kind wavlm|wav2vec2|hubert]
"""

import argparse

# a 7-layer CNN of 32 channels (the real models' strides, 20 ms frames at 16 kHz), 2 transformer layers
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
KINDS = ("wavlm", "wav2vec2", "hubert")


def make_tiny_ssl(out, kind="wavlm", seed=0):
    """Save a tiny random ``kind`` model and its feature extractor into ``out``; returns ``out``."""
    import torch
    import transformers

    if kind not in KINDS:
        raise ValueError(f"--kind {kind!r}: one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    config, model = {
        "wavlm": (transformers.WavLMConfig, transformers.WavLMModel),
        "wav2vec2": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        "hubert": (transformers.HubertConfig, transformers.HubertModel),
    }[kind]
    extra = dict(num_buckets=32, max_bucket_distance=80) if kind == "wavlm" else {}
    model(config(**TINY, **extra)).save_pretrained(out)
    # the real checkpoints' preprocessing: 16 kHz, normalised waveform (wav2vec2-base does it)
    transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                          do_normalize=True, return_attention_mask=True).save_pretrained(out)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--kind", default="wavlm", choices=KINDS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_tiny_ssl(args.out, args.kind, args.seed))


if __name__ == "__main__":
    main()
