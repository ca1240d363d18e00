"""roi_ext demo: ROIAlign in its three conventions, beside the reference systems.

* torchvision legacy (aligned=False) and Detectron2-style (aligned=True): roi_ext
  is printed next to torchvision.ops.roi_align and compared bit for bit.
* MindSpore (roi_end_mode=1, end coordinate inclusive): torchvision has no such
  mode, so roi_ext is printed next to the values MindSpore documents for
  mindspore.ops.ROIAlign.
"""
import torch
import torchvision

import roi_ext


def show(title, ours, theirs, theirs_name):
    print(f"\n== {title}")
    for k in range(ours.shape[0]):
        print(f"  roi {k}")
        for row_o, row_t in zip(ours[k, 0].tolist(), theirs[k, 0].tolist()):
            left = " ".join(f"{v:9.5f}" for v in row_o)
            right = " ".join(f"{v:9.5f}" for v in row_t)
            print(f"    roi_ext [{left}]   {theirs_name} [{right}]")
    same = torch.equal(ours, theirs)
    diff = (ours.double() - theirs.double()).abs().max().item() if ours.numel() else 0.0
    print(f"  bit-identical: {'yes' if same else 'no'} (max |diff| = {diff:.3g})")
    return same


def main():
    torch.manual_seed(0)
    # A 1x1x6x8 feature map whose value at (y, x) is 10*y + x, and three rois
    # (batch_index, x1, y1, x2, y2): inside, on the border, and partly outside.
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(8.0), indexing="ij")
    features = (10 * ys + xs)[None, None]
    rois = torch.tensor([[0, 1.0, 1.0, 4.0, 3.0], [0, 0.0, 0.0, 7.0, 5.0], [0, 5.5, 3.5, 9.0, 7.0]])
    print("features[0, 0] =")
    for row in features[0, 0].tolist():
        print("   ", " ".join(f"{v:4.0f}" for v in row))
    print("rois (batch_index, x1, y1, x2, y2) =", rois.tolist())

    ok = True
    for aligned in (False, True):
        ours = roi_ext.roi_align(features, rois, (2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=aligned)
        ref = torchvision.ops.roi_align(features, rois, (2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=aligned)
        name = "torchvision legacy (aligned=False)" if not aligned else "torchvision / Detectron2 (aligned=True)"
        ok &= show(name, ours, ref, "torchvision")

    # MindSpore's documented example for mindspore.ops.ROIAlign.
    doc_features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    doc_rois = torch.tensor([[0, 0.2, 0.3, 0.2, 0.3]])
    ours = roi_ext.ROIAlign(2, 2, 0.5, 2)(doc_features, doc_rois)
    mindspore_doc = torch.tensor([[[[1.7749998569, 2.0250000954], [2.2750000954, 2.5250000954]]]])
    ok &= show("MindSpore ROIAlign(2, 2, 0.5, 2), roi_end_mode=1 (documented example)", ours, mindspore_doc,
               "MindSpore")

    print("\nmodules:")
    print(" ", roi_ext.RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=2, aligned=True))
    print(" ", roi_ext.ROIAlign(7, 7, 0.0625))
    print("\nall conventions match their reference:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
