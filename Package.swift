// swift-tools-version:6.2
import PackageDescription

/// Module map (why each target exists):
/// - `COpenSSL`: system library for libcrypto (OpenSSL 3, from libssl-dev).
/// - `CBFTCryptoShim`: tiny C shim over the EVP API with prefixed symbols (Ed25519, SHA-256,
///   X25519, ChaCha20-Poly1305, HMAC-SHA256).
/// - `BFTCrypto`: Swift types for keys, signatures and digests; checks lengths, turns return codes into errors.
/// - `BFTSession`: authenticated sessions without sockets: Noise XX handshake bound to the
///   Ed25519 identities of cluster.json, then per-direction record protection.
/// - `BFTCore`: the pure PBFT protocol (no sockets, files, clocks, randomness or tasks) and its canonical wire codec.
/// - `BFTSim`: deterministic simulator (network faults, crashes, Byzantine wrappers, checkers).
/// - `BFTNode`: the networked replica (SwiftNIO), applications, configuration, client runtime.
/// - `BFTClusterHarness`: local replica processes (spawn, signals, wait, restart, status.json, log
///   tails), the `bft-cluster --control` line protocol the e2e tests drive them with, and the
///   deliver-log comparison; shared by bft-cluster, bft-loadgen, the e2e tests and CI.
let package = Package(
    name: "swift-pbft",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "BFTCore", targets: ["BFTCore"]),
        .library(name: "BFTFrameCodec", targets: ["BFTFrameCodec"]),
        .library(name: "BFTApplications", targets: ["BFTApplications"]),
        .library(name: "BFTClient", targets: ["BFTClient"]),
        .library(name: "BFTNode", targets: ["BFTNode"]),
        .executable(name: "bft-sim", targets: ["bft-sim"]),
        .executable(name: "bft-node", targets: ["bft-node"]),
        .executable(name: "bft-client", targets: ["bft-client"]),
        .executable(name: "bft-keygen", targets: ["bft-keygen"]),
        .executable(name: "bft-cluster", targets: ["bft-cluster"]),
        .executable(name: "bft-loadgen", targets: ["bft-loadgen"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "CBFTCryptoShim", dependencies: ["COpenSSL"], linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "BFTCrypto", dependencies: ["CBFTCryptoShim"]),
        .target(name: "BFTSession", dependencies: ["BFTCrypto"]),
        .target(name: "BFTCore", dependencies: ["BFTCrypto"]),
        .target(name: "BFTStorage"),
        .target(name: "BFTByzantine", dependencies: ["BFTCore", "BFTCrypto"]),
        .target(name: "BFTSim", dependencies: ["BFTCore", "BFTCrypto", "BFTByzantine"]),
        .executableTarget(name: "bft-sim", dependencies: [
            "BFTSim", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "BFTFrameCodec", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        .target(name: "BFTTransport", dependencies: [
            "BFTFrameCodec", "BFTSession", "BFTCrypto",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "BFTApplications", dependencies: [
            "BFTCore", "BFTCrypto", "BFTStorage", .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "BFTConfig", dependencies: ["BFTCore", "BFTCrypto", "BFTStorage", "BFTSession"]),
        .target(name: "BFTClient", dependencies: [
            "BFTCore", "BFTCrypto", "BFTConfig", "BFTFrameCodec", "BFTTransport", "BFTSession",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "BFTNode", dependencies: [
            "BFTCore", "BFTCrypto", "BFTStorage", "BFTFrameCodec", "BFTTransport", "BFTApplications", "BFTConfig", "BFTSession",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .executableTarget(name: "bft-node", dependencies: [
            "BFTNode", "BFTCore", "BFTCrypto", "BFTConfig", "BFTApplications", "BFTStorage", "BFTByzantine", "BFTClient",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "bft-client", dependencies: [
            "BFTClient", "BFTConfig", "BFTCore", "BFTCrypto", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "bft-keygen", dependencies: [
            "BFTConfig", "BFTCore", "BFTCrypto", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .target(name: "BFTClusterHarness", dependencies: [
            "BFTConfig", "BFTCore", .product(name: "Subprocess", package: "swift-subprocess"),
        ]),
        .executableTarget(name: "bft-cluster", dependencies: [
            "BFTClusterHarness", "BFTConfig", "BFTCore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "bft-loadgen", dependencies: [
            "BFTClusterHarness", "BFTClient", "BFTConfig", "BFTTransport", "BFTFrameCodec", "BFTCore", "BFTCrypto", "BFTByzantine",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "BFTClusterHarnessTests", dependencies: ["BFTClusterHarness", "BFTConfig", "BFTCore", "BFTCrypto"]),
        .testTarget(name: "BFTCryptoTests", dependencies: ["BFTCrypto"]),
        .testTarget(name: "BFTSessionTests", dependencies: ["BFTSession", "BFTCrypto"]),
        .testTarget(name: "BFTStorageTests", dependencies: ["BFTStorage"]),
        .testTarget(name: "BFTCoreTests", dependencies: ["BFTCore", "BFTCrypto"]),
        .testTarget(name: "BFTSimTests", dependencies: ["BFTSim", "BFTCore", "BFTByzantine"], exclude: ["Scenarios"]),
        .testTarget(name: "BFTNodeTests", dependencies: [
            "BFTNode", "BFTCore", "BFTCrypto", "BFTStorage", "BFTFrameCodec", "BFTTransport", "BFTApplications", "BFTConfig", "BFTClient",
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
