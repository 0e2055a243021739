"""ganrec_lite: the small shared package of the book *Adversarial learning, GANs and
LLMs for recommender systems*.

Modules, one concern each:

- :mod:`ganrec_lite.registry`: the files the book reads, checksums, the data cache.
- :mod:`ganrec_lite.data`: MovieLens, the published ML-100K splits, synthetic data.
- :mod:`ganrec_lite.splits`: seeded train/test splits and the leakage check.
- :mod:`ganrec_lite.metrics`: full-ranking and sampled top-k metrics, protocol cards.
- :mod:`ganrec_lite.pretrained`: IRGAN's released models, loaded safely.
- :mod:`ganrec_lite.gan`: GAN losses, gradient penalty, update_D/update_G, train_gan.
- :mod:`ganrec_lite.toy`: the 2-D ring of Gaussians and its mode-coverage measure.
- :mod:`ganrec_lite.text`: the MiniLM sentence encoder and item-text builders.
- :mod:`ganrec_lite.llm`: SmolLM2 from its GGUF file, prompts, greedy generation and the
  committed generations it replays (Chapter 5.9).
- :mod:`ganrec_lite.models`: recommender models, one module per model.
- :mod:`ganrec_lite.utils`: device choice, seeding, progress bars.
- :mod:`ganrec_lite.check`: self-checks for the exercises.
"""

from .utils import get_device, progress, seed_everything

__version__ = "0.1.0"
__all__ = ["get_device", "seed_everything", "progress", "__version__"]
