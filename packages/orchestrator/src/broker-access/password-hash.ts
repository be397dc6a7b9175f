import { createHash } from 'node:crypto';

/**
 * Whether a password matches the hash the management API shows for a user, so that apply
 * leaves a user alone when its password is already the configured one (a second run
 * changes nothing). RabbitMQ stores base64(salt ‖ H(salt ‖ password)) with a 4-byte salt;
 * H is named by `hashing_algorithm`.
 */
const ALGORITHMS: Record<string, string> = {
  rabbit_password_hashing_sha256: 'sha256',
  rabbit_password_hashing_sha512: 'sha512',
  rabbit_password_hashing_md5: 'md5',
};

export function passwordMatches(passwordHash: string | undefined, hashingAlgorithm: string | undefined, password: string): boolean {
  if (!passwordHash) return false;
  const algorithm = ALGORITHMS[hashingAlgorithm ?? 'rabbit_password_hashing_sha256'];
  if (!algorithm) return false; // unknown scheme: set the password again rather than guess
  const raw = Buffer.from(passwordHash, 'base64');
  if (raw.length <= 4) return false;
  const salt = raw.subarray(0, 4);
  const digest = createHash(algorithm).update(Buffer.concat([salt, Buffer.from(password, 'utf8')])).digest();
  return digest.equals(raw.subarray(4));
}
