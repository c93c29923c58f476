// Bulk AES-CTR for libssh2, linked into the programs built here.
//
// libssh2 1.10 (Debian 12's) encrypts and decrypts every packet one cipher
// block at a time: a 32 KiB packet is 2,048 calls of EVP_Cipher on 16
// bytes, and OpenSSL 3 spends far longer dispatching each call than
// encrypting its block. In a push to eight hosts that was more than half
// of the master's CPU, all on the broker thread.
//
// In counter mode the keystream does not depend on the data, so nothing
// needs one call per block. The programs are linked with
// `-Wl,--wrap=_libssh2_cipher_crypt` (and with wraps of the OpenSSL calls
// that set up, copy, reset and free a cipher context), which sends
// libssh2's per-block calls to ctr_keystream.cc: for a CTR context, it
// encrypts kKeystreamBytes of zeros in one call of EVP_Cipher, keeps that
// keystream beside the context (in the context's app data), and answers
// each block by XOR from it, in place. The bytes are exactly those of the
// block-by-block calls, because every call on that context, whatever its
// length, is served from the same keystream in order. Contexts of other
// modes go to libssh2's own function.
//
// Wrapping libssh2's function rather than EVP_Cipher saves, per block, a
// call into OpenSSL's dispatch and libssh2's copy through a stack buffer.
//
// What it relies on, true of every program linked with it (checked with
// nm and objdump -r on Debian 12's libssh2.a and libcrypto.a): every call
// of _libssh2_cipher_crypt comes from crypt.o, so the wrap sees them all;
// no one else sets a cipher context's app data; and libssh2 sets up each
// context once with EVP_CipherInit, then uses it only through
// _libssh2_cipher_crypt, and frees it.
//
// The installed shared library links libssh2 dynamically and has none of
// this: interposing a libcrypto symbol in a shared library would change
// it for the whole process that loads it.
//
// Thread safety: the state belongs to one context, and a context is used
// by one thread at a time (OpenSSL's own rule), so there is no lock.
#ifndef SPINDLE_TRANSPORTS_CTR_KEYSTREAM_H_
#define SPINDLE_TRANSPORTS_CTR_KEYSTREAM_H_

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>

namespace spindle {

// How much keystream one call of the real EVP_Cipher makes.
inline constexpr size_t kKeystreamBytes = 16 * 1024;

// True when `ctx` is being served from a buffered keystream: the program
// was linked with the wraps and `ctx` is a CTR context that has been used.
bool served_from_keystream(const EVP_CIPHER_CTX* ctx);

// Any thread. Bytes of keystream made so far, by all contexts.
uint64_t keystream_bytes_made();

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_CTR_KEYSTREAM_H_
