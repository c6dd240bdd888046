import torch

from conftest import SimpleVAE
from vae_export.families import load_model
from vae_export.families.reference import save_checkpoint
from vae_export.model import VAE, VAEConfig


def test_round_trip_is_exact(tmp_path):
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_dim=50, latent_dim=7))
    save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    rebuilt = loaded.encoder.module
    assert loaded.source == "vae-export" and loaded.family.name == "reference" and rebuilt.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_seed_state_dict_latent_24(tmp_path):
    torch.manual_seed(0)
    seed = SimpleVAE(latent_dim=24, hidden=300).eval()
    torch.save(seed.state_dict(), tmp_path / "seed.pt")
    loaded = load_model(tmp_path / "seed.pt")
    assert loaded.latent_dim == 24 and loaded.source == "state-dict" and loaded.config["hidden_dim"] == 300
    assert loaded.family.name == "state-dict"
    x = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        h = seed.encoder(x)
        mu, logvar = loaded.encoder(x)
        assert torch.equal(mu, seed.fc_mu(h)) and torch.equal(logvar, seed.fc_logvar(h))
        assert torch.equal(loaded.decoder(mu), seed.decoder(mu).reshape(-1, 1, 28, 28))
