"""Numbers published in the papers, printed beside ours in every table.

Values are transcribed from the paper texts in ``../shared/papers/``; each entry names its
table. Cut-offs follow the papers' own headers (see ``vssl_core.metrics`` for what the
released code actually computes).
"""
from __future__ import annotations

#: "How to Listen" Table 3: (cIoU at the dataset's cut-off, AUC) per dataset and method.
#: FS and VS use cIoU@0.5, US uses cIoU@0.3.
HOW_TO_LISTEN_TABLE3 = {
    "Baseline (centred box)": {"FS": (0.618, 0.534), "VS": (0.323, 0.372), "US": (0.038, 0.075)},
    "LVS": {"FS": (0.667, 0.549), "VS": (0.263, 0.345), "US": (0.036, 0.071)},
    "RCGrad": {"FS": (0.679, 0.551), "VS": (0.226, 0.334), "US": (0.175, 0.145)},
    "CLIPAudioTran": {"FS": (0.482, 0.491), "VS": (0.225, 0.316), "US": (0.073, 0.091)},
    "CLIPTextTran": {"VS": (0.241, 0.322), "US": (0.219, 0.164)},
}

#: "How to Listen" Table 2: evaluation frames and boxes per frame.
HOW_TO_LISTEN_TABLE2 = {
    "FS": {"frames": 250, "boxes": "1", "audio_s": 20},
    "VS": {"frames": 4436, "boxes": "1-5", "audio_s": 10, "single_box_percent": 89.3},
    "MS": {"frames": 455, "boxes": "2", "audio_s": 1},
    "US": {"frames": 10802, "boxes": "1-25", "audio_s": 1},
}

#: FlowGrad Table 1: (IoU at the header's tau = 0.5, AUC). The released evaluation uses an
#: IoU cut-off of 0.3 although the header says 0.5 (REFERENCE.md section 1).
FLOWGRAD_TABLE1 = {
    "Vision-only+CF+TF (topline)": (0.68, 0.51),
    "Optical flow only (baseline)": (0.33, 0.23),
    "RCGrad": (0.16, 0.13),
    "FlowGrad-H": (0.50, 0.30),
    "FlowGrad-IC": (0.26, 0.18),
    "FlowGrad-EN": (0.37, 0.23),
}

#: Hear The Flow Table 4 (VGG-Sound 10k training, VGG-SS test): row -> (cIoU@0.5, AUC).
#: Rows: a no flow; b + pretrained vision; c + frozen; d flow; e flow + pretrained; f + frozen.
HTF_TABLE4 = {
    "a": (0.129, 0.275), "b": (0.315, 0.364), "c": (0.306, 0.362),
    "d": (0.271, 0.343), "e": (0.382, 0.394), "f": (0.393, 0.398),
}

#: Hear The Flow Table 5, VGG-Sound 10k rows: flow network -> (cIoU@0.5, AUC).
HTF_TABLE5 = {"MaxPool": (0.379, 0.393), "ResNet18": (0.393, 0.398)}
