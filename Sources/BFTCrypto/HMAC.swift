import CBFTCryptoShim

/// HMAC-SHA256 (RFC 2104 / FIPS 198-1) via OpenSSL's EVP_MAC.
///
/// Like `SHA256`, failure can only mean a broken libcrypto or memory
/// exhaustion, so it traps instead of throwing.
public enum HMACSHA256 {
    public static let byteCount = 32

    /// HMAC-SHA256(key, message).
    public static func authenticationCode(key: [UInt8], message: [UInt8]) -> [UInt8] {
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in authenticationCode(key: k, message: m) }
        }
    }

    /// HMAC-SHA256 over raw buffers (no copies).
    public static func authenticationCode(key: UnsafeRawBufferPointer, message: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            guard bft_hmac_sha256(key.baseAddress, key.count, message.baseAddress, message.count,
                                  buffer.baseAddress, byteCount) == 1 else {
                fatalError("BFTCrypto: HMAC-SHA256 failed inside OpenSSL")
            }
            initialized = byteCount
        }
    }
}

/// HKDF with HMAC-SHA256: RFC 5869's extract/expand, and the variant the Noise
/// Protocol Framework (rev. 34, section 4.3) defines for its key schedule.
public enum HKDF {
    /// RFC 5869 HKDF-Extract: PRK = HMAC(salt, IKM); an empty salt means 32 zero bytes.
    public static func extract(salt: [UInt8], inputKeyMaterial: [UInt8]) -> [UInt8] {
        let s = salt.isEmpty ? [UInt8](repeating: 0, count: HMACSHA256.byteCount) : salt
        return HMACSHA256.authenticationCode(key: s, message: inputKeyMaterial)
    }

    /// RFC 5869 HKDF-Expand: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i), output the first
    /// `length` bytes (at most 255 × 32).
    public static func expand(pseudoRandomKey: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        precondition(length >= 0 && length <= 255 * HMACSHA256.byteCount, "HKDF-Expand: length out of range")
        var output: [UInt8] = []
        output.reserveCapacity(length)
        var previous: [UInt8] = []
        var counter: UInt8 = 1
        while output.count < length {
            previous = HMACSHA256.authenticationCode(key: pseudoRandomKey, message: previous + info + [counter])
            output += previous
            counter &+= 1
        }
        return Array(output.prefix(length))
    }

    /// Noise's `HKDF(chaining_key, input_key_material, num_outputs)` (rev. 34 §4.3):
    ///
    ///     temp_key = HMAC-HASH(chaining_key, input_key_material)
    ///     output1  = HMAC-HASH(temp_key, byte(0x01))
    ///     output2  = HMAC-HASH(temp_key, output1 || byte(0x02))
    ///     output3  = HMAC-HASH(temp_key, output2 || byte(0x03))
    ///
    /// Returns `numOutputs` (2 or 3) outputs of 32 bytes each. It is RFC 5869
    /// with salt = chaining key and empty info, cut into 32-byte pieces; the
    /// tests check both facts.
    public static func noise(chainingKey: [UInt8], inputKeyMaterial: [UInt8], numOutputs: Int) -> [[UInt8]] {
        precondition(numOutputs == 2 || numOutputs == 3, "Noise HKDF produces 2 or 3 outputs")
        let tempKey = HMACSHA256.authenticationCode(key: chainingKey, message: inputKeyMaterial)
        var outputs: [[UInt8]] = []
        var previous: [UInt8] = []
        for i in 1...numOutputs {
            previous = HMACSHA256.authenticationCode(key: tempKey, message: previous + [UInt8(i)])
            outputs.append(previous)
        }
        return outputs
    }
}
