"""Cross-channel entropy model for the learned texture codes (compressai).

Codes y: (B, C, R) = C channels per semantic region. A hyper-latent z
(factorized prior, EntropyBottleneck) gives the scale/mean of the first channel
group; each further group is conditioned on z and the decoded earlier groups
(GaussianConditional). forward() trains (likelihoods), compress()/decompress()
code for real with compressai's rANS coder; both ends run the same networks
on the same decoded symbols, so the round trip is exact.
"""

from __future__ import annotations

import torch
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from torch import nn


class CodeEntropyModel(nn.Module):
    def __init__(self, channels: int, regions: int, groups: int = 2, hyper: int = 8) -> None:
        super().__init__()
        assert channels % groups == 0
        self.c, self.r, self.groups, self.gc = channels, regions, groups, channels // groups
        n = channels * regions
        self.h_a = nn.Sequential(nn.Linear(n, 64), nn.LeakyReLU(0.1), nn.Linear(64, hyper))
        self.z_bottleneck = EntropyBottleneck(hyper)
        # One parameter net per group: input = hyper-latent + all earlier groups.
        self.param_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(hyper + g * self.gc * regions, 64), nn.LeakyReLU(0.1),
                          nn.Linear(64, 2 * self.gc * regions)) for g in range(groups))
        self.gaussian = GaussianConditional(None)
        # Training only: hand the decoder the noisy codes (y + uniform noise, what the likelihood is
        # taken on) instead of the straight-through rounded ones. Codes that start inside one
        # quantiser bin round to a constant, so the generator learns to ignore them and they collapse
        # to their mean; with noise the gradient is exact and the encoder learns to rise above it.
        self.noisy_codes = False

    def _params(self, g: int, z_hat: torch.Tensor, prev: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([z_hat.flatten(1)] + [p.flatten(1) for p in prev], 1)
        s, m = self.param_nets[g](x).view(-1, 2, self.gc, self.r).unbind(1)
        return nn.functional.softplus(s) + 0.11, m

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y (B, C, R) -> (y_hat, total bits per sample (B,))."""
        z = self.h_a(y.flatten(1))[..., None, None]
        z_hat, z_lik = self.z_bottleneck(z)
        bits = -torch.log2(z_lik).flatten(1).sum(1)
        outs: list[torch.Tensor] = []
        for g, yg in enumerate(y.split(self.gc, 1)):
            scale, mean = self._params(g, z_hat, outs)
            yg_hat, lik = self.gaussian(yg[..., None], scale[..., None], means=mean[..., None])
            # Straight-through rounding around the mean (what compress() codes) for the decoder.
            if self.training and not self.noisy_codes:
                yg_q = (torch.round(yg - mean) + mean - yg).detach() + yg
            else:
                yg_q = yg_hat[..., 0]
            bits = bits + (-torch.log2(lik)).flatten(1).sum(1)
            outs.append(yg_q)
        return torch.cat(outs, 1), bits

    def _tables(self) -> tuple[list, list, list]:
        g = self.gaussian
        return g.quantized_cdf.tolist(), g.cdf_length.reshape(-1).int().tolist(), g.offset.reshape(-1).int().tolist()

    @torch.no_grad()
    def compress(self, y: torch.Tensor) -> list[bytes]:
        """One sample (1, C, R) -> [z string, y string]; the groups share one rANS stream, as
        separate streams would cost their flush bytes once per group."""
        z = self.h_a(y.flatten(1))[..., None, None]
        z_string = self.z_bottleneck.compress(z)[0]
        z_hat = self.z_bottleneck.decompress([z_string], z.shape[-2:])
        enc, tables = BufferedRansEncoder(), self._tables()
        outs: list[torch.Tensor] = []
        for yg in y.split(self.gc, 1):
            scale, mean = self._params(len(outs), z_hat, outs)
            idx = self.gaussian.build_indexes(scale)
            sym = self.gaussian.quantize(yg, "symbols", mean)
            enc.encode_with_indexes(sym.reshape(-1).tolist(), idx.reshape(-1).tolist(), *tables)
            outs.append(self.gaussian.dequantize(sym, mean))
        return [z_string, enc.flush()]

    @torch.no_grad()
    def decompress(self, strings: list[bytes]) -> torch.Tensor:
        if len(strings) != 2:
            raise ValueError(f"expected 2 code strings, got {len(strings)}")
        z_hat = self.z_bottleneck.decompress([strings[0]], (1, 1))
        dec, tables = RansDecoder(), self._tables()
        dec.set_stream(strings[1])
        outs: list[torch.Tensor] = []
        for g in range(self.groups):
            scale, mean = self._params(g, z_hat, outs)
            idx = self.gaussian.build_indexes(scale)
            sym = torch.tensor(dec.decode_stream(idx.reshape(-1).tolist(), *tables), dtype=torch.int32)
            outs.append(self.gaussian.dequantize(sym.view_as(mean), mean))
        return torch.cat(outs, 1)

    def update(self) -> None:
        """Builds the CDF tables compress()/decompress() need (after training or loading)."""
        lower, upper, levels = 0.11, 64.0, 64
        scales = torch.exp(torch.linspace(torch.log(torch.tensor(lower)), torch.log(torch.tensor(upper)), levels))
        self.gaussian.update_scale_table(scales, force=True)
        self.z_bottleneck.update(force=True)
