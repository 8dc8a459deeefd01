import BFTCrypto
import Testing

@Suite("SHA-256 and Digest")
struct SHA256Tests {
    @Test("FIPS 180-2 vectors")
    func vectors() {
        #expect(SHA256.hash(Array("abc".utf8)).hex
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hash([]).hex
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hex
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)).hex
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("raw buffer and parts overloads agree with one-shot hashing")
    func overloads() {
        let data = Array("The quick brown fox jumps over the lazy dog".utf8)
        let expected = SHA256.hash(data)
        #expect(expected.hex == "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592")
        #expect(data.withUnsafeBytes { SHA256.hash($0) } == expected)
        #expect(SHA256.hash(UnsafeRawBufferPointer(start: nil, count: 0)) == SHA256.hash([]))

        for split in 0...data.count {
            let parts = [Array(data[..<split]), [], Array(data[split...])]
            #expect(SHA256.hash(parts: parts) == expected)
        }
        #expect(SHA256.hash(parts: data.map { [$0] }) == expected)
        #expect(SHA256.hash(parts: [[UInt8]]()) == SHA256.hash([]))
        #expect(SHA256.hash(parts: [[UInt8](), []]) == SHA256.hash([]))
        // Any Sequence works, e.g. a lazy map.
        #expect(SHA256.hash(parts: ["abc"].lazy.map { Array($0.utf8) }).hex
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test("Digest construction, hex and description")
    func digestBasics() throws {
        #expect(Digest.byteCount == 32)
        #expect(Digest.zero.bytes == [UInt8](repeating: 0, count: 32))
        #expect(Digest.zero.hex == String(repeating: "0", count: 64))
        #expect(Digest(bytes: []) == nil)
        #expect(Digest(bytes: [UInt8](repeating: 1, count: 31)) == nil)
        #expect(Digest(bytes: [UInt8](repeating: 1, count: 33)) == nil)

        let bytes = (0..<32).map { UInt8($0 * 7 + 1) }
        let d = try #require(Digest(bytes: bytes))
        #expect(d.bytes == bytes)
        #expect(d.withUnsafeBytes { Array($0) } == bytes)
        #expect(Digest(hex: d.hex) == d)
        #expect(Digest(hex: d.hex.uppercased()) == d)
        #expect(Digest(hex: String(d.hex.dropLast())) == nil)
        #expect(Digest(hex: String(d.hex.dropLast(2))) == nil)
        #expect(Digest(hex: "zz" + String(d.hex.dropFirst(2))) == nil)
        #expect(d.description.hasPrefix(String(d.hex.prefix(8))))
        #expect(d != Digest.zero)
        #expect(Set([d, Digest(bytes: bytes)!, Digest.zero]).count == 2)
    }

    @Test("Digest ordering is lexicographic on bytes")
    func digestOrdering() throws {
        var digests = (0..<200).map { SHA256.hash([UInt8(truncatingIfNeeded: $0), UInt8($0 / 256)]) }
        // Edge cases that differ only in a late byte or a high bit.
        var a = [UInt8](repeating: 0, count: 32); a[31] = 1
        var b = [UInt8](repeating: 0, count: 32); b[0] = 0x80
        var c = [UInt8](repeating: 0xFF, count: 32); c[7] = 0xFE
        digests += [Digest.zero, Digest(bytes: a)!, Digest(bytes: b)!, Digest(bytes: c)!]
        for x in digests.prefix(60) {
            for y in digests {
                #expect((x < y) == x.bytes.lexicographicallyPrecedes(y.bytes))
            }
        }
        #expect(Digest.zero < Digest(bytes: a)!)
        #expect(Digest(bytes: a)! < Digest(bytes: b)!)
        #expect(digests.sorted().map(\.bytes)
                == digests.map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) })
    }
}

@Suite("Hex and SecureRandom")
struct HexRandomTests {
    @Test("hex encode/decode")
    func hex() {
        #expect(Hex.encode([]) == "")
        #expect(Hex.encode([0x00, 0x0f, 0xa0, 0xff]) == "000fa0ff")
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("000fA0Ff") == [0x00, 0x0f, 0xa0, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.decode("0x00") == nil)
        #expect(Hex.decode(" 00") == nil)
        #expect(Hex.decode("éé") == nil)
        let all = (0...255).map { UInt8($0) }
        #expect(Hex.decode(Hex.encode(all)) == all)
    }

    @Test("secure random bytes")
    func random() {
        #expect(SecureRandom.bytes(count: 0).isEmpty)
        let a = SecureRandom.bytes(count: 64)
        let b = SecureRandom.bytes(count: 64)
        #expect(a.count == 64)
        #expect(a != b)
        #expect(a != [UInt8](repeating: 0, count: 64))
        #expect(SecureRandom.bytes(count: 100_000).count == 100_000)
    }
}
