// The bulk AES-CTR under libssh2 (transports/ctr_keystream.h): calls of
// libssh2's _libssh2_cipher_crypt in any split give exactly OpenSSL's own
// counter-mode bytes. The references use EVP_EncryptUpdate, which the
// wraps leave alone.
#include "transports/ctr_keystream.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>
#include <vector>

// libssh2's own declaration (openssl.h, not installed); the linker sends
// this test's calls to the wrap, as it sends libssh2's.
extern "C" int _libssh2_cipher_crypt(EVP_CIPHER_CTX** ctx, const EVP_CIPHER* (*algo)(), int encrypt,
                                     unsigned char* block, size_t blocksize);

namespace spindle {
namespace {

using Bytes = std::vector<unsigned char>;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

Bytes random_bytes(size_t n) {
  Bytes b(n);
  EXPECT_EQ(RAND_bytes(b.data(), static_cast<int>(n)), 1);
  return b;
}

// libssh2's way: EVP_CipherInit, then _libssh2_cipher_crypt.
Ctx libssh2_style(const EVP_CIPHER* cipher, const Bytes& key, const Bytes& iv, int enc) {
  Ctx ctx(EVP_CIPHER_CTX_new());
  EXPECT_EQ(EVP_CipherInit(ctx.get(), cipher, key.data(), iv.data(), enc), 1);
  return ctx;
}

Bytes reference(const EVP_CIPHER* cipher, const Bytes& key, const Bytes& iv, const Bytes& in) {
  Ctx ctx(EVP_CIPHER_CTX_new());
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), iv.data()), 1);
  Bytes out(in.size());
  int n = 0;
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), out.data(), &n, in.data(), static_cast<int>(in.size())), 1);
  EXPECT_EQ(static_cast<size_t>(n), in.size());
  return out;
}

// Runs `in` through libssh2's cipher call, in place, in pieces of the
// given sizes, cycling.
Bytes cipher_in_pieces(EVP_CIPHER_CTX* ctx, const Bytes& in, const std::vector<size_t>& sizes) {
  Bytes out = in;
  int enc = EVP_CIPHER_CTX_is_encrypting(ctx);
  size_t done = 0;
  for (size_t i = 0; done < in.size(); ++i) {
    size_t n = std::min(sizes[i % sizes.size()], in.size() - done);
    EXPECT_EQ(_libssh2_cipher_crypt(&ctx, nullptr, enc, out.data() + done, n), 0);
    done += n;
  }
  return out;
}

TEST(CtrKeystream, BlockByBlockAndOddSplitsGiveOpenSslsBytes) {
  const Bytes plain = random_bytes(5 * kKeystreamBytes + 123);
  const std::vector<std::vector<size_t>> splits = {
      {16}, {1}, {15, 16, 17}, {kKeystreamBytes}, {kKeystreamBytes - 1, 2}, {40000}, {plain.size()}};
  for (const EVP_CIPHER* cipher : {EVP_aes_128_ctr(), EVP_aes_256_ctr()}) {
    const Bytes key = random_bytes(EVP_CIPHER_get_key_length(cipher));
    const Bytes iv = random_bytes(16);
    const Bytes want = reference(cipher, key, iv, plain);
    for (const auto& sizes : splits) {
      SCOPED_TRACE(testing::Message() << "first piece " << sizes[0]);
      Ctx enc = libssh2_style(cipher, key, iv, 1);
      EXPECT_EQ(cipher_in_pieces(enc.get(), plain, sizes), want);
      EXPECT_TRUE(served_from_keystream(enc.get())) << "the _libssh2_cipher_crypt wrap is not linked in";
      Ctx dec = libssh2_style(cipher, key, iv, 0);
      EXPECT_EQ(cipher_in_pieces(dec.get(), want, {16}), plain);
    }
  }
}

TEST(CtrKeystream, OtherModesGoStraightToOpenSsl) {
  const Bytes key = random_bytes(16), iv = random_bytes(16), plain = random_bytes(4096);
  Ctx ctx = libssh2_style(EVP_aes_128_cbc(), key, iv, 1);
  EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
  Bytes out = cipher_in_pieces(ctx.get(), plain, {16});
  EXPECT_FALSE(served_from_keystream(ctx.get()));
  Ctx ref(EVP_CIPHER_CTX_new());
  ASSERT_EQ(EVP_EncryptInit_ex(ref.get(), EVP_aes_128_cbc(), nullptr, key.data(), iv.data()), 1);
  EVP_CIPHER_CTX_set_padding(ref.get(), 0);
  Bytes want(plain.size());
  int n = 0;
  ASSERT_EQ(EVP_EncryptUpdate(ref.get(), want.data(), &n, plain.data(), static_cast<int>(plain.size())), 1);
  EXPECT_EQ(out, want);
}

TEST(CtrKeystream, ACopyAndANewIvEachKeepTheirOwnPlace) {
  const EVP_CIPHER* cipher = EVP_aes_128_ctr();
  const Bytes key = random_bytes(16), iv = random_bytes(16), plain = random_bytes(3 * kKeystreamBytes);
  const Bytes want = reference(cipher, key, iv, plain);
  const size_t half = kKeystreamBytes + 40;
  const Bytes first(plain.begin(), plain.begin() + half), rest(plain.begin() + half, plain.end());
  const Bytes want_rest(want.begin() + half, want.end());

  Ctx original = libssh2_style(cipher, key, iv, 1);
  ASSERT_EQ(cipher_in_pieces(original.get(), first, {16}), Bytes(want.begin(), want.begin() + half));
  Ctx copy(EVP_CIPHER_CTX_new());
  ASSERT_EQ(EVP_CIPHER_CTX_copy(copy.get(), original.get()), 1);
  EXPECT_EQ(cipher_in_pieces(original.get(), rest, {16}), want_rest);
  EXPECT_EQ(cipher_in_pieces(copy.get(), rest, {48}), want_rest);

  // A new IV on a used context starts the new keystream from its start.
  const Bytes iv2 = random_bytes(16);
  ASSERT_EQ(EVP_CipherInit(original.get(), nullptr, nullptr, iv2.data(), 1), 1);
  EXPECT_EQ(cipher_in_pieces(original.get(), plain, {16}), reference(cipher, key, iv2, plain));
  ASSERT_EQ(EVP_CIPHER_CTX_reset(copy.get()), 1);
  EXPECT_FALSE(served_from_keystream(copy.get()));
}

}  // namespace
}  // namespace spindle
