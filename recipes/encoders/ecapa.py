"""ECAPA-TDNN encoder: SpeechBrain's ECAPA_TDNN behind the project's interface."""

from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

from recipes.encoders.base import ProfilingEncoder, layer_dict


class EcapaEncoder(ProfilingEncoder):
    """SpeechBrain ECAPA-TDNN; teacher ``res2net_scale: 8``, student ``4`` (paper 004).

    Arguments are those of ``speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN``;
    ``emb_dim`` is its ``lin_neurons``.
    """

    def __init__(self, input_size=80, emb_dim=256, channels=(512, 512, 512, 512, 1536),
                 kernel_sizes=(5, 3, 3, 3, 1), dilations=(1, 2, 3, 4, 1), attention_channels=128,
                 res2net_scale=8, se_channels=128, global_context=True):
        super().__init__()
        self.emb_dim = emb_dim
        self.model = ECAPA_TDNN(
            input_size=input_size, lin_neurons=emb_dim, channels=list(channels),
            kernel_sizes=list(kernel_sizes), dilations=list(dilations),
            attention_channels=attention_channels, res2net_scale=res2net_scale,
            se_channels=se_channels, global_context=global_context,
        )

    def forward(self, feats, lengths=None):
        return self.model(feats, lengths=lengths).squeeze(1)

    def named_layers(self):
        m = self.model
        pairs = [(f"block{i}", blk) for i, blk in enumerate(m.blocks)]
        pairs += [("mfa", m.mfa), ("pooling", m.asp_bn), ("embedding", m.fc)]
        return layer_dict(pairs)

    def replacing_groups(self):
        """The TDNN block, the three SE-Res2Net blocks, and the tail (MFA, attentive
        pooling, its BatchNorm, the embedding layer) as one module: a student with the same
        C (other res2net scale, SE / attention / MFA widths) has the same block boundaries."""
        blocks = [[f"model.blocks.{i}"] for i in range(len(self.model.blocks))]
        return blocks + [["model.mfa", "model.asp", "model.asp_bn", "model.fc"]]
