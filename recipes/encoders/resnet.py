"""ResNet encoder: SpeechBrain's ResNet with length-aware attentive statistics pooling."""

import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.models.ResNet import ResNet

from recipes.encoders.base import ProfilingEncoder, layer_dict


class ResNetEncoder(ProfilingEncoder):
    """SpeechBrain ResNet; teacher ``block_sizes: [3, 4, 6, 3]`` (ResNet-34 layout),
    student ``[2, 2, 2, 2]`` (ResNet-18 layout), as in paper 004.

    SpeechBrain's ``ResNet.forward`` ignores ``lengths``, so the zero padding of short
    utterances enters its attentive pooling. Here the attention logits of padded frames
    are masked to -inf before the softmax, so only valid frames are pooled. Parameters
    are SpeechBrain's own (same state-dict layout under ``model.``).
    """

    def __init__(self, input_size=80, emb_dim=256, channels=(128, 128, 256, 256),
                 block_sizes=(3, 4, 6, 3), strides=(1, 2, 2, 2)):
        super().__init__()
        self.emb_dim = emb_dim
        self.time_stride = 1
        for s in strides:
            self.time_stride *= s
        self.model = ResNet(input_size=input_size, channels=list(channels),
                            block_sizes=list(block_sizes), strides=list(strides),
                            lin_neurons=emb_dim)

    def frames(self, feats):
        m = self.model
        x = m.activation1(m.bn1(m.conv1(feats.unsqueeze(1))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return x.transpose(2, 3).flatten(1, 2)  # (batch, channels * freq, time)

    def pool(self, x, lengths=None):
        m = self.model
        logits = m.attention[:-1](x)  # attention without its final softmax
        if lengths is not None:
            mask = length_to_mask(lengths * x.shape[-1], max_len=x.shape[-1], device=x.device)
            mask[:, 0] = True  # never pool over zero frames
            logits = logits.masked_fill(~mask.bool().unsqueeze(1), float("-inf"))
        w = torch.softmax(logits, dim=2)
        mu = torch.sum(x * w, dim=2)
        sg = torch.sqrt((torch.sum((x ** 2) * w, dim=2) - mu ** 2).clamp(min=1e-5))
        return m.norm_stats(torch.cat([mu, sg], dim=1))

    def forward(self, feats, lengths=None):
        x = self.pool(self.frames(feats), lengths)
        return self.model.norm_embed(self.model.fc_embed(x))

    def named_layers(self):
        m = self.model
        return layer_dict([
            ("stem", m.activation1), ("stage1", m.layer1), ("stage2", m.layer2),
            ("stage3", m.layer3), ("stage4", m.layer4), ("pooling", m.norm_stats),
            ("embedding", m.norm_embed),
        ])

    def replacing_groups(self):
        """Stem, the four stages (a student with the same channels may have fewer blocks
        per stage), and the tail (attentive pooling, embedding)."""
        return [["model.conv1", "model.bn1"], ["model.layer1"], ["model.layer2"], ["model.layer3"],
                ["model.layer4"], ["model.attention", "model.norm_stats", "model.fc_embed", "model.norm_embed"]]
