"""roi_ext demo: every operator on a picture, and ROIAlign beside torchvision.

Draws a synthetic scene, marks three boxes on it, and writes one PNG showing,
for each box, the crops produced by
  * crop_and_resize: bilinear, nearest (TensorFlow) and bilinear_v2 (MindSpore);
  * ROIAlign in its three conventions: torchvision legacy (aligned=False),
    torchvision / Detectron2 (aligned=True) and MindSpore (roi_end_mode=1);
  * Cropping2D of the whole scene (Keras semantics; a view, no copy),
then prints a summary: shapes, and the ROIAlign results next to torchvision's.

    python examples/demo.py [--out demo.png]
"""
import argparse

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw

import roi_ext

H, W = 240, 360
CROP = 72  # side of each displayed crop, in pixels
BOXES = {  # name: (y1, x1, y2, x2) in pixels of the scene, and a colour
    "house": ((92, 40, 214, 178), (220, 40, 40)),
    "sun": ((14, 262, 90, 338), (250, 180, 0)),
    "tree": ((70, 214, 214, 300), (30, 150, 60)),
}


def scene():
    """An RGB float image [H, W, 3] in [0, 1]: sky, sun, hills, a house and a tree."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.zeros((H, W, 3), np.float32)
    sky = y / H
    img[..., 0], img[..., 1], img[..., 2] = 0.45 + 0.3 * sky, 0.65 + 0.2 * sky, 0.95
    sun = (x - 300) ** 2 + (y - 52) ** 2 < 30 ** 2
    img[sun] = (1.0, 0.85, 0.2)
    hills = y > 165 + 18 * np.sin(x / 37.0)
    img[hills] = np.stack([0.25 + 0.1 * np.sin(x / 9.0), 0.6 + 0.05 * np.cos(y / 7.0), np.full_like(x, 0.25)], -1)[hills]
    wall = (x > 55) & (x < 165) & (y > 140) & (y < 212)
    img[wall] = (0.85, 0.75, 0.55)
    roof = (y > 95) & (y <= 140) & (np.abs(x - 110) < (y - 95) * 1.35)
    img[roof] = (0.7, 0.15, 0.12)
    for x0 in (70, 130):  # windows with a cross
        win = (x > x0) & (x < x0 + 22) & (y > 152) & (y < 174)
        img[win] = (0.3, 0.55, 0.85)
        img[win & ((np.abs(x - x0 - 11) < 1.5) | (np.abs(y - 163) < 1.5))] = (0.95, 0.95, 0.95)
    door = (x > 100) & (x < 120) & (y > 180) & (y < 212)
    img[door] = (0.45, 0.25, 0.1)
    trunk = (x > 250) & (x < 264) & (y > 150) & (y < 212)
    img[trunk] = (0.4, 0.25, 0.1)
    crown = (x - 257) ** 2 / 40 ** 2 + (y - 118) ** 2 / 45 ** 2 < 1
    img[crown] = np.stack([0.1 + 0.05 * np.sin(x), 0.45 + 0.15 * np.sin(x / 3.0) * np.cos(y / 4.0),
                           np.full_like(x, 0.12)], -1)[crown]
    return np.clip(img, 0, 1)


def to_pil(t):
    """[h, w, 3] float tensor in [0, 1] -> PIL image."""
    return Image.fromarray((t.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo.png", help="where to write the picture")
    args = parser.parse_args()

    image = torch.from_numpy(scene())  # [H, W, 3]
    nhwc = image[None]  # [1, H, W, 3]: TensorFlow's layout
    nchw = nhwc.permute(0, 3, 1, 2).contiguous()  # [1, 3, H, W]: torchvision's layout
    names = list(BOXES)
    pix = torch.tensor([BOXES[n][0] for n in names], dtype=torch.float32)  # (y1, x1, y2, x2) pixels
    norm = pix / torch.tensor([H - 1, W - 1, H - 1, W - 1])  # CropAndResize: normalised [y1, x1, y2, x2]
    box_index = torch.zeros(len(names), dtype=torch.int32)
    rois = torch.cat([torch.zeros(len(names), 1), pix[:, [1, 0, 3, 2]]], 1)  # ROIAlign: (b, x1, y1, x2, y2)

    rows = []
    for method in ("bilinear", "nearest", "bilinear_v2"):
        crops = roi_ext.crop_and_resize(nhwc, norm, box_index, (CROP, CROP), method)
        rows.append((f"crop_and_resize {method}", [crops[i] for i in range(len(names))], tuple(crops.shape)))
    conventions = [
        ("roi_align aligned=False (torchvision)", dict(aligned=False, roi_end_mode=0)),
        ("roi_align aligned=True (Detectron2)", dict(aligned=True, roi_end_mode=0)),
        ("ROIAlign roi_end_mode=1 (MindSpore)", dict(aligned=False, roi_end_mode=1)),
    ]
    comparisons = []
    for label, kw in conventions:
        out = roi_ext.roi_align(nchw, rois, (CROP, CROP), 1.0, 2, **kw)
        rows.append((label, [out[i].permute(1, 2, 0) for i in range(len(names))], tuple(out.shape)))
        if kw["roi_end_mode"] == 0:
            ref = torchvision.ops.roi_align(nchw, rois, (CROP, CROP), 1.0, 2, kw["aligned"])
            comparisons.append((label, out, ref))
    cropped = roi_ext.Cropping2D(((40, 20), (60, 100)), data_format="channels_last")(nhwc)

    # --- the picture ---------------------------------------------------------
    pad, label_w, title_h = 8, 250, 22
    grid_w = label_w + len(names) * (CROP + pad)
    width = max(W, grid_w) + cropped.shape[2] + 3 * pad
    height = title_h + max(H, len(rows) * (CROP + pad) + title_h) + pad
    canvas = Image.new("RGB", (width, height + H + title_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    scene_img = to_pil(image)
    scene_draw = ImageDraw.Draw(scene_img)
    for n in names:
        (y1, x1, y2, x2), colour = BOXES[n]
        scene_draw.rectangle([x1, y1, x2, y2], outline=colour, width=3)
        scene_draw.text((x1 + 4, y1 + 3), n, fill=colour)
    draw.text((pad, 4), "scene [1, 240, 360, 3] with the boxes", fill=(0, 0, 0))
    canvas.paste(scene_img, (pad, title_h))
    draw.text((W + 2 * pad, 4), f"Cropping2D(((40, 20), (60, 100))): {list(cropped.shape)}", fill=(0, 0, 0))
    canvas.paste(to_pil(cropped[0]), (W + 2 * pad, title_h))
    top = title_h + H + pad + title_h
    for i, n in enumerate(names):
        draw.text((label_w + i * (CROP + pad), top - 16), n, fill=BOXES[n][1])
    for r, (label, crops, _) in enumerate(rows):
        y = top + r * (CROP + pad)
        draw.text((pad, y + CROP // 2 - 6), label, fill=(0, 0, 0))
        for i, crop in enumerate(crops):
            canvas.paste(to_pil(crop), (label_w + i * (CROP + pad), y))
    canvas = canvas.crop((0, 0, width, top + len(rows) * (CROP + pad)))
    canvas.save(args.out)

    # --- the summary -----------------------------------------------------------
    print(f"scene {list(nhwc.shape)} (NHWC) / {list(nchw.shape)} (NCHW), boxes: {', '.join(names)}")
    for label, _, shape in rows:
        print(f"  {label:40s} -> {list(shape)}")
    print(f"  {'Cropping2D(((40, 20), (60, 100)))':40s} -> {list(cropped.shape)} (a view: "
          f"{cropped.untyped_storage().data_ptr() == nhwc.untyped_storage().data_ptr()})")
    ok = True
    print("\nROIAlign beside torchvision.ops.roi_align (7x7 bins of the house, channel 0, top-left 3x3):")
    for label, ours, ref in comparisons:
        same = torch.equal(ours, ref)
        ok &= same
        small_ours = roi_ext.roi_align(nchw, rois[:1], 7, 1.0, 2, "aligned=True" in label)[0, 0, :3, :3]
        small_ref = torchvision.ops.roi_align(nchw, rois[:1], 7, 1.0, 2, "aligned=True" in label)[0, 0, :3, :3]
        print(f"  {label}: bit-identical to torchvision: {'yes' if same else 'NO'}")
        for a, b in zip(small_ours.tolist(), small_ref.tolist()):
            print("    roi_ext " + " ".join(f"{v:.6f}" for v in a) + "   torchvision " + " ".join(f"{v:.6f}" for v in b))
    doc = roi_ext.ROIAlign(2, 2, 0.5, 2)(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[0, 0.2, 0.3, 0.2, 0.3]]))
    documented = torch.tensor([[1.7749998569, 2.0250000954], [2.2750000954, 2.5250000954]])
    same = torch.equal(doc[0, 0], documented)
    ok &= same
    print(f"  MindSpore ROIAlign(2, 2, 0.5, 2) documented example: roi_ext {doc[0, 0].flatten().tolist()} "
          f"== MindSpore's {'yes' if same else 'NO'}")
    print(f"\nwrote {args.out} ({canvas.size[0]}x{canvas.size[1]})")
    print("all conventions match their reference:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
