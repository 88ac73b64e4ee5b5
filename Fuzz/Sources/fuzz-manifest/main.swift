import FuzzSupport

Fuzz.main(testOneInput: fuzzOneInput, writeSeeds: ManifestSeeds.write)
