"""Third-party chatter the user cannot act on, held back while we call the exporters
(torch.onnx, torch.export and ExecuTorch's lowering): their progress prints, internal
deprecation notices and loggers. Errors still propagate, and a warning from the user's own model
code still shows."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "onnxscript")
# copyreg: torch.export's pytree pickling raises a FutureWarning about its own LeafSpec there.
_NOISY_WARNING_MODULES = (r"torch(\.|$)", r"onnxscript(\.|$)", r"onnx_ir(\.|$)", r"onnx(\.|$)", r"copyreg$")


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence exporter chatter users cannot act on (progress prints, torchvision notices,
    internal deprecation notices); errors still propagate."""
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # Only warnings raised inside the exporter's own stack; a warning from the user's
            # model code (its own module) still shows.
            for module in _NOISY_WARNING_MODULES:
                warnings.filterwarnings("ignore", module=module)
            # Raised at our call site, so not caught above; the CLI says it in its own words.
            warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
