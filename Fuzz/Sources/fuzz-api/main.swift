import FuzzSupport

Fuzz.main(testOneInput: fuzzOneInput, writeSeeds: APISeeds.write)
