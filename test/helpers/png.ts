import { crc32, deflateSync } from 'node:zlib';

/**
 * A valid `size`×`size` RGB PNG of one colour. zlib's output is fixed for a fixed input and level,
 * so the same arguments give the same bytes (and the same content hash).
 */
export function solidPng(size: number, [r, g, b]: readonly [number, number, number], level?: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.from([0, ...Array.from({ length: size }, () => [r, g, b]).flat()]);
  const pixels = Buffer.concat(Array.from({ length: size }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', level === undefined ? deflateSync(pixels) : deflateSync(pixels, { level })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
