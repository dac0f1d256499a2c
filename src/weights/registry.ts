// The official checkpoints this project loads: what each is, where its authors publish it, and
// what we know for certain about the file.
//
// Sources are the download links in each project's README (or code), copied as published:
//   StyleCLIP utils.py `google_drive_paths`, HairCLIP README, encoder4editing README,
//   face-parsing.PyTorch README, FFCLIP (kristen-rang/FFCLIP) README, openai/CLIP clip.py `_MODELS`.
// `sha256` / `size` are filled in only where a source states them exactly; everything else is null
// (the file is then accepted as downloaded, its hash recorded in the cache's .sha256 sidecar).
// Only OpenAI's CLIP URL carries its hash (the path component is the file's sha256).
//
// Google Drive: `urls` use drive.usercontent.google.com's direct-download form of the published
// file id (large files otherwise answer with a "can't scan for viruses" HTML page); `page` is the
// link as the README gives it, for people. Drive may still refuse (quota): the downloader detects
// an HTML answer and says so; then download by hand and pass the local path.
//
// Licenses: a short note per file, from the publishing repository; several of these weights are
// for non-commercial research use only (NVIDIA's StyleGAN2, CelebAMask-HQ-trained parsers). Check
// the upstream terms before any other use.

export type WeightsKind = 'generator' | 'clip' | 'identity' | 'face-parser' | 'encoder' | 'mapper' | 'other';

export interface WeightsEntry {
  /** registry name, used by `clipmapper weights fetch <name>` and resolveWeights */
  name: string;
  /** file name in the cache directory (and the name the official code expects) */
  fileName: string;
  kind: WeightsKind;
  description: string;
  /** download URLs, tried in order */
  urls: string[];
  /** where a person gets it (README link or project page) */
  page: string;
  /** exact size in bytes, where a source states it; else null */
  size: number | null;
  /** lower-case hex sha256, where a source states it; else null */
  sha256: string | null;
  /** what is known about the size when `size` is null (for display) */
  approxSize?: string;
  license: string;
  /** provenance of the URL/hash, caveats */
  notes?: string;
  /** the official projects that load this file */
  usedBy: string[];
}

/** Direct-download URL for a Google Drive file id. */
export function driveUrl(id: string): string {
  return `https://drive.usercontent.google.com/download?id=${id}&export=download&confirm=t`;
}
function drivePage(id: string): string {
  return `https://drive.google.com/file/d/${id}/view`;
}

const NVIDIA_NC = 'StyleGAN2 FFHQ weights by NVIDIA (converted by rosinality): NVIDIA Source Code License-NC, non-commercial use only; FFHQ images CC BY-NC-SA 4.0.';

// StyleCLIP's 14 released latent mappers (StyleCLIP utils.py, `mapper/pretrained/<name>.pt`).
const STYLECLIP_MAPPERS: [string, string][] = [
  ['afro', '1i5vAqo4z0I-Yon3FNft_YZOq7ClWayQJ'],
  ['angry', '1g82HEH0jFDrcbCtn3M22gesWKfzWV_ma'],
  ['beyonce', '1KJTc-h02LXs4zqCyo7pzCp0iWeO6T9fz'],
  ['bobcut', '1IvyqjZzKS-vNdq_OhwapAcwrxgLAY8UF'],
  ['bowlcut', '1xwdxI2YCewSt05dEHgkpmmzoauPjEnnZ'],
  ['curly_hair', '1xZ7fFB12Ci6rUbUfaHPpo44xUFzpWQ6M'],
  ['depp', '1FPiJkvFPG_y-bFanxLLP91wUKuy-l3IV'],
  ['hilary_clinton', '1X7U2zj2lt0KFifIsTfOOzVZXqYyCWVll'],
  ['mohawk', '1oMMPc8iQZ7dhyWavZ7VNWLwzf9aX4C09'],
  ['purple_hair', '14H0CGXWxePrrKIYmZnDD2Ccs65EEww75'],
  ['surprised', '1F-mPrhO-UeWrV1QYMZck63R43aLtPChI'],
  ['taylor_swift', '10jHuHsKKJxuf3N0vgQbX_SMEQgFHDrZa'],
  ['trump', '14v8D0uzy4tOyfBU3ca9T0AzTt3v-dNyh'],
  ['zuckerberg', '1NjDcMUL8G-pO3i_9N6EPpQNXeMc3Ar1r'],
];

export const REGISTRY: readonly WeightsEntry[] = [
  {
    name: 'stylegan2-ffhq-config-f',
    fileName: 'stylegan2-ffhq-config-f.pt',
    kind: 'generator',
    description: 'StyleGAN2 config-f generator, FFHQ 1024x1024, rosinality format ({g_ema, latent_avg, g, d})',
    urls: [driveUrl('1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT'), driveUrl('1pts5tkfAcWrg4TpLDu6ILF5wHID32Nzm')],
    page: drivePage('1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT'),
    size: null,
    sha256: null,
    approxSize: '≈381 MB',
    license: NVIDIA_NC + ' Conversion code (rosinality/stylegan2-pytorch): MIT.',
    notes: 'First link: StyleCLIP utils.py, encoder4editing and FFCLIP READMEs; second: HairCLIP README. '
      + 'One public mirror publishes LFS sha256 bae494ef77e32a9cd1792a81a3c167692a0e64f6bcd8b06592ff42917e2ed46e, '
      + 'not confirmed to be the Drive file, so not enforced. A 133 MB g_ema-only variant also circulates.',
    usedBy: ['StyleCLIP', 'HairCLIP', 'e4e', 'FFCLIP'],
  },
  {
    name: 'clip-vit-b-32',
    fileName: 'ViT-B-32.pt',
    kind: 'clip',
    description: 'OpenAI CLIP ViT-B/32 (TorchScript archive, mixed float16/float32)',
    urls: ['https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt'],
    page: 'https://github.com/openai/CLIP',
    size: 353976522,
    sha256: '40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af',
    license: 'openai/CLIP: MIT (code and released weights).',
    notes: 'URL from openai/CLIP clip.py _MODELS; the path component is the sha256 clip.load() checks.',
    usedBy: ['StyleCLIP', 'HairCLIP', 'FFCLIP'],
  },
  {
    name: 'ir-se50',
    fileName: 'model_ir_se50.pth',
    kind: 'identity',
    description: 'ArcFace IR-SE50 face-recognition backbone (TreB1eN/InsightFace_Pytorch), for the identity loss',
    urls: [driveUrl('1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn'), driveUrl('1FS2V756j-4kWduGxfir55cMni5mZvBTv')],
    page: drivePage('1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn'),
    size: null,
    sha256: null,
    approxSize: '≈175 MB',
    license: 'TreB1eN/InsightFace_Pytorch: MIT (code); trained on MS-Celeb-1M-derived data, research use.',
    notes: 'First link: encoder4editing / pSp and FFCLIP READMEs; second: HairCLIP README.',
    usedBy: ['pSp', 'e4e', 'HairCLIP', 'FFCLIP'],
  },
  {
    name: 'parsenet',
    fileName: 'parsenet.pth',
    kind: 'face-parser',
    description: "HairCLIP's face parser (CelebAMask-HQ U-Net, 19 classes), for the background and hair losses",
    urls: ['https://github.com/wty-ustc/HairCLIP/raw/main/pretrained_models/parsenet.pth'],
    page: 'https://github.com/wty-ustc/HairCLIP/tree/main/pretrained_models',
    size: null,
    sha256: null,
    approxSize: '≈8 MB',
    license: 'Committed in wty-ustc/HairCLIP (LGPL-2.1); presumably the CelebAMask-HQ release (CelebAMask-HQ: non-commercial research only).',
    notes: 'Committed in the HairCLIP repository (pretrained_models/parsenet.pth); size not checked.',
    usedBy: ['HairCLIP', 'FFCLIP'],
  },
  {
    name: 'bisenet-face-parsing',
    fileName: '79999_iter.pth',
    kind: 'face-parser',
    description: 'BiSeNet face parser (zllrunning/face-parsing.PyTorch), 19 CelebAMask-HQ classes',
    urls: [driveUrl('154JgKpzCPW82qINcVieuPH3fZ2e0P812')],
    page: 'https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812',
    size: null,
    sha256: null,
    approxSize: '≈53.3 MB',
    license: 'zllrunning/face-parsing.PyTorch: MIT (code); trained on CelebAMask-HQ (non-commercial research only).',
    usedBy: ['face-parsing.PyTorch'],
  },
  {
    name: 'e4e-ffhq',
    fileName: 'e4e_ffhq_encode.pt',
    kind: 'encoder',
    description: 'encoder4editing (e4e) FFHQ encoder: real face -> w+ (pSp checkpoint with encoder and decoder)',
    urls: [driveUrl('1cUv_reLE6k3604or78EranS7XzuVMWeO')],
    page: drivePage('1cUv_reLE6k3604or78EranS7XzuVMWeO'),
    size: null,
    sha256: null,
    approxSize: '≈1.2 GB',
    license: 'omertov/encoder4editing: MIT (code); its decoder holds the NVIDIA StyleGAN2 FFHQ weights (non-commercial).',
    usedBy: ['e4e', 'HairCLIP', 'StyleCLIP', 'FFCLIP'],
  },
  {
    name: 'hairclip',
    fileName: 'hairclip.pt',
    kind: 'mapper',
    description: 'HairCLIP pretrained model: hairstyle/colour mapper with its CLIP and StyleGAN2 decoder',
    urls: [driveUrl('1tGIKWI6xniEULeyADvhu_xzRVcv_31Sx')],
    page: drivePage('1tGIKWI6xniEULeyADvhu_xzRVcv_31Sx'),
    size: null,
    sha256: null,
    approxSize: '≈565 MB',
    license: 'wty-ustc/HairCLIP: LGPL-2.1; contains OpenAI CLIP (MIT) and NVIDIA StyleGAN2 FFHQ weights (non-commercial).',
    usedBy: ['HairCLIP'],
  },
  ...STYLECLIP_MAPPERS.map(([m, id]): WeightsEntry => ({
    name: `styleclip-${m.replace(/_/g, '-')}`,
    fileName: `styleclip-mapper-${m}.pt`,
    kind: 'mapper',
    description: `StyleCLIP latent mapper '${m}' (mapper/pretrained/${m}.pt)`,
    urls: [driveUrl(id)],
    page: drivePage(id),
    size: null,
    sha256: null,
    license: 'orpatashnik/StyleCLIP: MIT (code); mappers work on the NVIDIA StyleGAN2 FFHQ generator (non-commercial).',
    notes: 'From StyleCLIP utils.py google_drive_paths.',
    usedBy: ['StyleCLIP'],
  })),
  {
    name: 'ffclip-ffhq',
    fileName: 'ffclip_ffhq.pt',
    kind: 'mapper',
    description: 'FFCLIP free-form text mapper trained on FFHQ (human portraits)',
    urls: [driveUrl('1oYMi5jsrUI_WyQ-xGf-F2T6myVGBx3od')],
    page: drivePage('1oYMi5jsrUI_WyQ-xGf-F2T6myVGBx3od'),
    size: null,
    sha256: null,
    license: 'kristen-rang/FFCLIP: no license stated in the repository; works on NVIDIA StyleGAN2 FFHQ (non-commercial).',
    notes: 'README of kristen-rang/FFCLIP (the official code named by the first author). The released file '
      + "was not inspected; its name here is ours. LSUN car / church checkpoints: Drive ids "
      + '11Zsx_bjMbIzzTjLxWDhOEgoXmnbNwH7t / 1ihmvppjLXh71ARx4NLnIMzJRAFLdQnmn.',
    usedBy: ['FFCLIP'],
  },
];

/** The entry called `name` (its registry name or its file name), or undefined. */
export function findWeights(name: string): WeightsEntry | undefined {
  const n = name.trim();
  return REGISTRY.find((e) => e.name === n) ?? REGISTRY.find((e) => e.fileName === n);
}

/** Like findWeights, but throws a message that lists the known names. */
export function getWeights(name: string): WeightsEntry {
  const e = findWeights(name);
  if (!e) throw new Error(`unknown weights '${name}'; known: ${REGISTRY.map((x) => x.name).join(', ')} (or give a file path)`);
  return e;
}
