/**
 * Data sets: CIFAR-10 and ImageNet 32×32 (Score SDE preprocessing fields), and the toy sets of the
 * high-order paper and friends.
 */
import { z } from "zod";
import { builders } from "./builder.js";

function imageShape<K extends "cifar10" | "imagenet32">(kind: K, randomFlip: boolean) {
  return z.strictObject({
    kind: z.literal(kind),
    /** Where the data set lives; absent: the worker's default location. */
    path: z.string().min(1).optional(),
    imageSize: z.literal(32, { error: "this data set is 32×32: imageSize must be 32" }).default(32),
    numChannels: z.literal(3, { error: "this data set is RGB: numChannels must be 3" }).default(3),
    centered: z.boolean().default(false),
    randomFlip: z.boolean().default(randomFlip),
    uniformDequantization: z.boolean().default(false),
  });
}

/** CIFAR-10 (Score SDE CIFAR-10 defaults: random flips on). */
export const Cifar10Schema = imageShape("cifar10", true);
/** ImageNet 32×32 (score_flow / high-order defaults: no random flips). */
export const Imagenet32Schema = imageShape("imagenet32", false);

export const TOY_DATASETS = [
  "checkerboard",
  "mog1d",
  "mog2d",
  "rings",
  "moons",
  "swissroll",
  "gaussian",
] as const;
export type ToyDataset = (typeof TOY_DATASETS)[number];

/** The dimension each toy set lives in; `null`: any dimension (the Gaussian). */
export const TOY_DIMS: Record<ToyDataset, number | null> = {
  checkerboard: 2,
  mog1d: 1,
  mog2d: 2,
  rings: 2,
  moons: 2,
  swissroll: 2,
  gaussian: null,
};

const toyShape = {
  kind: z.literal("toy"),
  dataset: z.enum(TOY_DATASETS),
  /** Optional multiplicative rescaling of the samples. */
  scale: z.number().positive().optional(),
};
const toyDim = () => z.number().int().positive();

/** Toy data once resolved: `dim` present. */
export const ResolvedToyDataSchema = z.strictObject({
  kind: toyShape.kind,
  dataset: toyShape.dataset,
  /** Data dimension D. */
  dim: toyDim(),
  scale: toyShape.scale,
});

export const ToyDataSchema = z
  .strictObject({
    ...toyShape,
    /** Data dimension D; defaults to the set's own (2 for the 2-D sets, 1 for mog1d, 2 for gaussian). */
    dim: toyDim().optional(),
  })
  .transform((d) => ({ ...d, dim: d.dim ?? TOY_DIMS[d.dataset] ?? 2 }))
  .pipe(ResolvedToyDataSchema);

export const DataSchema = z.discriminatedUnion("kind", [Cifar10Schema, Imagenet32Schema, ToyDataSchema]);
/** Data once resolved (what travels to the worker). */
export const ResolvedDataSchema = z.discriminatedUnion("kind", [
  Cifar10Schema,
  Imagenet32Schema,
  ResolvedToyDataSchema,
]);

export type Cifar10 = z.infer<typeof Cifar10Schema>;
export type Imagenet32 = z.infer<typeof Imagenet32Schema>;
export type ToyData = z.infer<typeof ToyDataSchema>;
export type Data = z.infer<typeof DataSchema>;
export type ImageData = Cifar10 | Imagenet32;

/** Builders: `data.cifar10({path})`, `data.imagenet32()`, `data.toy({dataset: "checkerboard"})`. */
export const data = builders("data", { cifar10: Cifar10Schema, imagenet32: Imagenet32Schema, toy: ToyDataSchema });

export function isImageData(d: Data): d is ImageData {
  return d.kind === "cifar10" || d.kind === "imagenet32";
}

/** The data dimension D the model must produce (C·H·W for images). */
export function dataDim(d: Data): number {
  return isImageData(d) ? d.numChannels * d.imageSize * d.imageSize : d.dim;
}
