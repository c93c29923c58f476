// The wraps described in ctr_keystream.h. The linker sends calls of
// _libssh2_cipher_crypt, EVP_CipherInit, EVP_CIPHER_CTX_copy, EVP_CIPHER_CTX_reset and
// EVP_CIPHER_CTX_free to the __wrap_ functions here; __real_ names
// libssh2's or OpenSSL's own.
#include "transports/ctr_keystream.h"

#include <libssh2.h>

#include <string.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

// The wrap's signature is libssh2 1.10's; 1.11 added an argument (and
// AES-GCM). meson.build leaves this file out for other versions.
#if LIBSSH2_VERSION_NUM >= 0x010b00
#error "ctr_keystream.cc wraps _libssh2_cipher_crypt as libssh2 1.10 declares it"
#endif

extern "C" {
int __real__libssh2_cipher_crypt(EVP_CIPHER_CTX** ctx, const EVP_CIPHER* (*algo)(), int encrypt,
                                 unsigned char* block, size_t blocksize);
int __real_EVP_CipherInit(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher, const unsigned char* key,
                          const unsigned char* iv, int enc);
int __real_EVP_CIPHER_CTX_copy(EVP_CIPHER_CTX* out, const EVP_CIPHER_CTX* in);
int __real_EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX* ctx);
void __real_EVP_CIPHER_CTX_free(EVP_CIPHER_CTX* ctx);
}

namespace spindle {
namespace {

// The keystream of one context: `bytes` were made by the real EVP_Cipher,
// and the first `used` of them have been handed out.
struct Keystream {
  unsigned char bytes[kKeystreamBytes];
  size_t used = kKeystreamBytes;
};

bool is_ctr(const EVP_CIPHER_CTX* ctx) {
  const EVP_CIPHER* cipher = EVP_CIPHER_CTX_get0_cipher(ctx);
  return cipher != nullptr && EVP_CIPHER_get_mode(cipher) == EVP_CIPH_CTR_MODE;
}

// Only CTR contexts ever get a Keystream as app data.
Keystream* keystream_of(const EVP_CIPHER_CTX* ctx) {
  if (ctx == nullptr || !is_ctr(ctx)) return nullptr;
  return static_cast<Keystream*>(EVP_CIPHER_CTX_get_app_data(ctx));
}

void drop_keystream(EVP_CIPHER_CTX* ctx) {
  if (Keystream* ks = keystream_of(ctx)) {
    EVP_CIPHER_CTX_set_app_data(ctx, nullptr);
    delete ks;
  }
}

// Whole 16-byte loads and stores: libssh2 hands over one block at a time.
void xor_bytes(unsigned char* data, const unsigned char* key, size_t n) {
  using Block = unsigned char __attribute__((vector_size(16)));
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Block a, b;
    memcpy(&a, data + i, 16);
    memcpy(&b, key + i, 16);
    a ^= b;
    memcpy(data + i, &a, 16);
  }
  for (; i < n; ++i) data[i] ^= key[i];
}

std::atomic<uint64_t> g_bytes_made{0};

}  // namespace

uint64_t keystream_bytes_made() { return g_bytes_made.load(std::memory_order_relaxed); }

bool served_from_keystream(const EVP_CIPHER_CTX* ctx) { return keystream_of(ctx) != nullptr; }

}  // namespace spindle

using spindle::Keystream;
using spindle::kKeystreamBytes;

// libssh2's one cipher call (openssl.c), sent here by the linker: every
// packet, block by block, in place. Returns 0 on success as libssh2's does.
extern "C" int __wrap__libssh2_cipher_crypt(EVP_CIPHER_CTX** ctxp, const EVP_CIPHER* (*algo)(),
                                            int encrypt, unsigned char* block, size_t blocksize) {
  EVP_CIPHER_CTX* ctx = *ctxp;
  // The app data is only ever ours (see the header), so a context that
  // has it needs no further look: this runs once per 16 bytes.
  auto* ks = static_cast<Keystream*>(EVP_CIPHER_CTX_get_app_data(ctx));
  if (ks == nullptr) {
    if (!spindle::is_ctr(ctx)) return __real__libssh2_cipher_crypt(ctxp, algo, encrypt, block, blocksize);
    ks = new Keystream;
    EVP_CIPHER_CTX_set_app_data(ctx, ks);
  }
  for (size_t done = 0; done < blocksize;) {
    if (ks->used == kKeystreamBytes) {
      // Counter mode on zeros gives the keystream itself.
      static const unsigned char kZeros[kKeystreamBytes] = {};
      if (EVP_Cipher(ctx, ks->bytes, kZeros, kKeystreamBytes) <= 0) return 1;
      ks->used = 0;
      spindle::g_bytes_made.fetch_add(kKeystreamBytes, std::memory_order_relaxed);
    }
    size_t n = std::min(blocksize - done, kKeystreamBytes - ks->used);
    spindle::xor_bytes(block + done, ks->bytes + ks->used, n);
    ks->used += n;
    done += n;
  }
  return 0;
}

// A new key or IV starts a new keystream.
extern "C" int __wrap_EVP_CipherInit(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher,
                                     const unsigned char* key, const unsigned char* iv, int enc) {
  spindle::drop_keystream(ctx);
  return __real_EVP_CipherInit(ctx, cipher, key, iv, enc);
}

// OpenSSL's copy copies the app data pointer; the copy gets its own
// keystream, at the same place in it.
extern "C" int __wrap_EVP_CIPHER_CTX_copy(EVP_CIPHER_CTX* out, const EVP_CIPHER_CTX* in) {
  spindle::drop_keystream(out);
  int ok = __real_EVP_CIPHER_CTX_copy(out, in);
  Keystream* ks = spindle::keystream_of(in);
  if (ks != nullptr && EVP_CIPHER_CTX_get_app_data(out) == ks) {
    EVP_CIPHER_CTX_set_app_data(out, ok == 1 ? new Keystream(*ks) : nullptr);
  }
  return ok;
}

extern "C" int __wrap_EVP_CIPHER_CTX_reset(EVP_CIPHER_CTX* ctx) {
  spindle::drop_keystream(ctx);
  return __real_EVP_CIPHER_CTX_reset(ctx);
}

extern "C" void __wrap_EVP_CIPHER_CTX_free(EVP_CIPHER_CTX* ctx) {
  spindle::drop_keystream(ctx);
  __real_EVP_CIPHER_CTX_free(ctx);
}
