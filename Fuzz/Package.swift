// swift-tools-version:6.1
import PackageDescription

// Coverage-guided fuzz targets (libFuzzer) for BitFleet's untrusted inputs. A separate
// package because each target is an executable whose `main` comes from libFuzzer: it only
// links with `-sanitize=fuzzer`, which the root package's normal build does not use.
// Build and run with ../scripts/fuzz.sh; see ../docs/FUZZING.md.
let package = Package(
    name: "BitFleetFuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        // `name:` so the products below resolve whatever the checkout directory is called.
        .package(name: "BitFleet", path: ".."),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.0"),
    ],
    targets: [
        // Shared harness plumbing: main (--write-seeds DIR, else libFuzzer), seed writing.
        .target(name: "CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"]),
        // .bnn reader + validator (raw files, and sections assembled into a valid container).
        .executableTarget(name: "fuzz-bnn", dependencies: [
            "FuzzSupport", .product(name: "BitModel", package: "BitFleet"),
        ]),
        // Signed-manifest push path of the agent, with a fixed Ed25519 key.
        .executableTarget(name: "fuzz-manifest", dependencies: [
            "FuzzSupport", .product(name: "FleetKit", package: "BitFleet"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // ONNX protobuf -> .bnn converter.
        .executableTarget(name: "fuzz-onnx", dependencies: [
            "FuzzSupport", .product(name: "ModelImport", package: "BitFleet"),
            .product(name: "BitModel", package: "BitFleet"),
        ]),
        // Controller API request bodies: FleetJSON decode + FleetKit validation.
        .executableTarget(name: "fuzz-api", dependencies: [
            "FuzzSupport", .product(name: "FleetKit", package: "BitFleet"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
